"""Device-side helpers of the torch UDF mesher: connected components and fixed-radius neighbour tests, checked
against scipy (csgraph, cKDTree)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components
from scipy.spatial import cKDTree

from gen3d_ros.completion.mesh_graph import connected_components, face_adjacency, large_components
from gen3d_ros.completion.point_bins import any_within


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("seed", [0, 1])
def test_components_match_scipy_on_random_sparse_graphs(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    a, b = rng.integers(0, n, 4000), rng.integers(0, n, 4000)  # below the percolation threshold: many parts
    label = connected_components(n, torch.from_numpy(a), torch.from_numpy(b)).numpy()
    _, ref = scipy_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    assert len(np.unique(ref)) > 1000
    assert _same_partition(label, ref)
    assert np.all(label <= np.arange(n))  # the smallest node id of the component


def test_components_of_a_long_path_settle_in_few_rounds():
    # A 200k-node path numbered in a shuffled order: plain label propagation would need 200k rounds.
    n = 200_000
    order = torch.from_numpy(np.random.default_rng(0).permutation(n))
    label = connected_components(n, order[:-1], order[1:])
    assert torch.all(label == 0)


def _strip(nx: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A 1 x nx strip of 2 nx triangles."""
    xs = np.arange(nx + 1, dtype=np.float64)
    verts = np.concatenate([np.c_[xs, np.zeros(nx + 1), np.zeros(nx + 1)],
                            np.c_[xs, np.ones(nx + 1), np.zeros(nx + 1)]]) + shift
    i = np.arange(nx)
    faces = np.concatenate([np.c_[i, i + 1, nx + 1 + i], np.c_[i + 1, nx + 2 + i, nx + 1 + i]])
    return verts, faces


def test_large_components_keeps_faces_of_big_edge_connected_parts():
    _, big = _strip(50)  # 100 faces
    _, small = _strip(3)  # 6 faces
    small = small + 200
    touching = np.array([[0, 500, 501]])  # shares only vertex 0 with the big strip: its own component
    faces = torch.from_numpy(np.concatenate([big, small, touching]))
    keep = large_components(faces, 7).numpy()
    assert keep[:100].all() and not keep[100:].any()
    assert large_components(faces, 1).all()
    a, b = face_adjacency(faces)
    assert len(a) == 99 + 5  # interior edges of the two strips


@pytest.mark.parametrize("hinted", [False, True])
@pytest.mark.parametrize("dense_bins", [1 << 26, 0])  # dense table or binary search of the bins
def test_any_within_matches_a_kd_tree(hinted, dense_bins):
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 30, (20_000, 3)).astype(np.float32)
    queries = rng.uniform(-2, 32, (30_000, 3)).astype(np.float32)
    radius = 0.6
    dist, _ = cKDTree(points).query(queries)
    hints = queries + rng.normal(0, 0.3, queries.shape).astype(np.float32) if hinted else None
    found = any_within(torch.from_numpy(queries), torch.from_numpy(points), radius,
                       hints=None if hints is None else torch.from_numpy(hints), max_pairs=5000,
                       dense_bins=dense_bins).numpy()
    assert 0.2 < found.mean() < 0.8
    np.testing.assert_array_equal(found, dist <= radius)


def test_any_within_empty_and_bad_radius():
    q = torch.zeros(3, 3)
    assert not any_within(q, torch.zeros(0, 3), 1.0).any()
    assert any_within(torch.zeros(0, 3), q, 1.0).shape == (0,)
    with pytest.raises(ValueError, match="radius must be positive"):
        any_within(q, q, 0.0)
