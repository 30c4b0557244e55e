"""gen3d_ros.completion.voxelize against brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen3d_ros.completion.voxelize import (
    crop_mask,
    crop_points,
    crop_voxels,
    isin_voxels,
    point_indices,
    voxel_centers,
    voxelize,
)


def _brute_force_voxels(points: np.ndarray, size: float, origin: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(math.floor((float(p[a]) - float(origin[a])) / size) for a in range(3)) for p in points}


def test_voxelize_matches_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-7.0, 9.0, (3000, 3))
    origin = np.array([-1.3, 0.7, -2.2])
    got = voxelize(points, 0.37, origin)
    assert got.dtype == np.int32 and got.shape[1] == 3
    assert {tuple(r) for r in got.tolist()} == _brute_force_voxels(points, 0.37, origin)
    assert len({tuple(r) for r in got.tolist()}) == got.shape[0]  # unique rows
    # sorted lexicographically (x, then y, then z)
    assert np.array_equal(got, got[np.lexsort((got[:, 2], got[:, 1], got[:, 0]))])


def test_voxelize_default_origin_and_inverse() -> None:
    points = np.array([[0.05, 0.05, 0.05], [0.09, 0.01, 0.0], [-0.01, 0.0, 0.0], [0.1, 0.1, 0.1]])
    vox, inverse = voxelize(points, 0.1, return_inverse=True)
    assert vox.tolist() == [[-1, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert inverse.tolist() == [1, 1, 0, 2]
    assert np.array_equal(vox[inverse], point_indices(points, 0.1))


def test_voxel_centers_round_trip() -> None:
    rng = np.random.default_rng(1)
    idx = np.unique(rng.integers(-50, 50, (500, 3)), axis=0).astype(np.int32)
    origin = np.array([3.0, -2.0, 0.5])
    centers = voxel_centers(idx, 0.2, origin)
    assert centers.dtype == np.float32
    np.testing.assert_allclose(centers[0], origin + (idx[0] + 0.5) * 0.2, atol=1e-6)
    assert np.array_equal(voxelize(centers, 0.2, origin), idx)


def test_isin_voxels_matches_python_sets() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(-5, 5, (400, 3))
    b = rng.integers(-5, 5, (300, 3))
    ref = {tuple(r) for r in b.tolist()}
    expected = np.array([tuple(r) in ref for r in a.tolist()])
    assert np.array_equal(isin_voxels(a, b), expected)
    assert 0 < expected.sum() < len(expected)
    assert isin_voxels(a, np.zeros((0, 3), int)).sum() == 0


def test_crop_mask_box_cylinder_and_z_range_match_loops() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(-10, 10, (2000, 3))
    c = np.array([1.0, -2.0, 0.5])
    box = crop_mask(pts, c, half_extent_m=(4.0, 3.0, 2.0))
    exp_box = [all(-h <= p[a] - c[a] < h for a, h in enumerate((4.0, 3.0, 2.0))) for p in pts]
    assert np.array_equal(box, exp_box)
    cyl = crop_mask(pts, c, radius_m=5.0, z_range_m=(-1.0, 3.0))
    exp_cyl = [(p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 <= 25.0 and -1.0 <= p[2] - c[2] < 3.0 for p in pts]
    assert np.array_equal(cyl, exp_cyl)
    # z_range overrides the z half extent
    mixed = crop_mask(pts, c, half_extent_m=(4.0, 3.0, 0.1), z_range_m=(-1.0, 3.0))
    exp_mixed = [-4 <= p[0] - c[0] < 4 and -3 <= p[1] - c[1] < 3 and -1 <= p[2] - c[2] < 3 for p in pts]
    assert np.array_equal(mixed, exp_mixed)
    assert crop_points(pts, c, half_extent_m=2.0).shape == (int(crop_mask(pts, c, half_extent_m=2.0).sum()), 3)
    # half-open: the low face is in, the high face is out
    edge = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert crop_mask(edge, half_extent_m=1.0).tolist() == [True, False]


def test_crop_voxels_keeps_grid_cells() -> None:
    idx = np.array([[0, 0, 0], [9, 4, 2], [10, 0, 0], [-1, 2, 2], [3, 5, 1]])
    assert crop_voxels(idx, (10, 5, 3)).tolist() == [True, True, False, False, False]


def test_bad_inputs_raise_with_the_offending_value() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(4, 2\)"):
        voxelize(np.zeros((4, 2)), 0.1)
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(np.zeros((4, 3)), 0.0)
    with pytest.raises(ValueError, match=r"points\[1\]"):
        voxelize(np.array([[0.0, 0, 0], [np.nan, 0, 0]]), 0.1)


def test_voxelize_a_million_points() -> None:
    pts = np.random.default_rng(4).uniform(-40, 40, (1_000_000, 3)).astype(np.float32)
    vox = voxelize(pts, 0.2, np.array([-40.0, -40.0, -40.0]))
    assert vox.shape[0] > 900_000 and vox.min() >= 0


def test_sparse_far_apart_points_take_the_sorting_path_and_agree() -> None:
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.uniform(-1, 1, (200, 3)), rng.uniform(-1, 1, (200, 3)) + 5000.0])
    vox, inverse = voxelize(points, 0.05, return_inverse=True)  # extent of ~1e15 cells: no dense mask
    assert {tuple(r) for r in vox.tolist()} == _brute_force_voxels(points, 0.05, np.zeros(3))
    assert np.array_equal(vox[inverse], point_indices(points, 0.05))


def test_isin_voxels_far_apart_sets_agree_with_sets() -> None:
    a = np.array([[0, 0, 0], [10**8, 5, 5], [3, 3, 3]])
    b = np.array([[10**8, 5, 5], [-10**8, 0, 0]])
    assert isin_voxels(a, b).tolist() == [False, True, False]
