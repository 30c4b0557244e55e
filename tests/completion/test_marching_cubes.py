"""Torch marching cubes against scikit-image's classic (Lorensen) marching cubes, on analytic and random fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.measure import marching_cubes as skimage_marching_cubes

from gen3d_ros.completion.marching_cubes import crossed_cubes, marching_cubes
from gen3d_ros.completion.marching_cubes_table import EDGE_AXIS, EDGE_START, TRIANGLES


def _edge_midpoints() -> dict[tuple[float, float, float], int]:
    out = {}
    for e, (start, axis) in enumerate(zip(EDGE_START, EDGE_AXIS)):
        p = [float(v) for v in start]
        p[axis] += 0.5
        out[tuple(p)] = e
    return out


def _canonical(tri: tuple[int, ...]) -> tuple[int, ...]:
    """A triangle's cyclic rotation starting at its smallest entry: equal for equally wound triangles."""
    k = tri.index(min(tri))
    return tri[k:] + tri[:k]


def test_case_table_is_scikit_image_lorensen_for_every_corner_configuration():
    midpoint = _edge_midpoints()
    assert TRIANGLES[0] == () and TRIANGLES[255] == ()
    for case in range(1, 255):
        vol = np.zeros((2, 2, 2), np.float32)
        for k in range(8):
            vol[k & 1, k >> 1 & 1, k >> 2 & 1] = float(case >> k & 1)
        verts, faces, _, _ = skimage_marching_cubes(vol, 0.5, method="lorensen")
        edges = [tuple(midpoint[tuple(np.round(verts[i], 3))] for i in f) for f in faces]
        ours = [TRIANGLES[case][i:i + 3] for i in range(0, len(TRIANGLES[case]), 3)]
        assert sorted(map(_canonical, ours)) == sorted(map(_canonical, edges)), f"case {case}"


def _sphere(shape=(30, 31, 32), centre=(14.3, 15.1, 15.7), radius=10.2) -> np.ndarray:
    g = np.indices(shape, dtype=np.float32)
    return np.linalg.norm(g - np.asarray(centre, np.float32)[:, None, None, None], axis=0) - radius


def _fields() -> dict[str, tuple[np.ndarray, float]]:
    rng = np.random.default_rng(0)
    g = np.indices((20, 21, 22), dtype=np.float32)
    smooth = ndimage.gaussian_filter(rng.normal(size=(24, 25, 26)), 2.0).astype(np.float32)
    return {
        "sphere": (_sphere(), 0.0),
        "plane_on_lattice": (g[2] - 7.0, 0.0),  # vertices exactly at lattice vertices: edge ends at the level
        "plane_offset": (g[2] - 7.3, 0.0),
        "tilted_plane": ((g[0] * 0.3 + g[1] * 0.2 + g[2]) / 1.06 - 9.1, 0.0),
        "smooth_random": (smooth, 0.01),
        "white_noise": (rng.normal(size=(12, 13, 14)).astype(np.float32), 0.1),  # many ambiguous cubes
    }


def _area(verts: np.ndarray, faces: np.ndarray) -> float:
    t = verts.astype(np.float64)[faces]
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def _oriented_triangles(verts: np.ndarray, faces: np.ndarray) -> set:
    """Each triangle as its three rounded vertex positions, rotated to start at the smallest: wound sets."""
    out = set()
    for tri in np.round(verts[faces], 4):
        rows = [tuple(r) for r in tri]
        out.add(_canonical(tuple(rows)))
    return out


@pytest.mark.parametrize("name", list(_fields()))
def test_same_triangles_as_scikit_image_lorensen(name):
    vol, level = _fields()[name]
    verts, faces = marching_cubes(torch.from_numpy(vol), level)
    assert verts.dtype == torch.float32 and faces.dtype == torch.int64
    verts, faces = verts.numpy(), faces.numpy()
    ref_verts, ref_faces, _, _ = skimage_marching_cubes(vol, level, method="lorensen")
    assert len(faces) == len(ref_faces) > 100
    assert _area(verts, faces) == pytest.approx(_area(ref_verts, ref_faces), rel=1e-5)
    assert _oriented_triangles(verts, faces) == _oriented_triangles(ref_verts, ref_faces)


def test_vertices_are_shared_one_per_crossed_lattice_edge():
    vol = _sphere()
    verts, faces = marching_cubes(torch.from_numpy(vol), 0.0)
    verts = verts.numpy()
    assert len(np.unique(np.round(verts, 5), axis=0)) == len(verts)  # no duplicate positions
    crossed = sum(int(((vol[s0] > 0) != (vol[s1] > 0)).sum()) for s0, s1 in (
        (np.s_[:-1], np.s_[1:]), (np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:, :, :-1], np.s_[:, :, 1:])))
    assert len(verts) == crossed
    np.testing.assert_array_equal(np.unique(faces.numpy()), np.arange(len(verts)))


def test_closed_sphere_is_watertight_and_consistently_wound_outwards():
    vol = _sphere()
    verts, faces = (t.numpy() for t in marching_cubes(torch.from_numpy(vol), 0.0))
    directed = faces[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2)
    _, per_edge = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert np.all(per_edge == 2), "every edge is shared by exactly two faces"
    assert len(np.unique(directed, axis=0)) == len(directed), "each directed edge once: consistent winding"
    assert len(verts) - len(per_edge) + len(faces) == 2  # Euler characteristic of a sphere
    t = verts.astype(np.float64)[faces]
    normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    outward = t.mean(axis=1) - (14.3, 15.1, 15.7)
    assert np.all(np.einsum("ij,ij->i", normal, outward) > 0), "normals point to the values above the level"


def test_random_fields_are_watertight_inside_the_volume():
    # Closed surfaces of a noisy field, kept off the border: the classic table splits ambiguous faces
    # consistently, so no cube leaves a hole against its neighbour.
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(16, 17, 18)).astype(np.float32)
    vol[[0, -1]] = vol[:, [0, -1]] = vol[:, :, [0, -1]] = -5.0
    faces = marching_cubes(torch.from_numpy(vol), 0.2)[1].numpy()
    directed = faces[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2)
    _, per_edge = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert len(faces) > 1000 and np.all(per_edge == 2)
    assert len(np.unique(directed, axis=0)) == len(directed)


def test_mask_leaves_out_exactly_the_cubes_touching_an_unknown_vertex():
    vol = _sphere()
    mask = np.random.default_rng(1).random(vol.shape) > 0.03
    mask[:, :, 20:] = False
    full_v, full_f = (t.numpy() for t in marching_cubes(torch.from_numpy(vol), 0.0))
    v, f = (t.numpy() for t in marching_cubes(torch.from_numpy(vol), 0.0, mask=torch.from_numpy(mask)))
    cube_ok = np.ones(tuple(s - 1 for s in vol.shape), bool)
    case = np.zeros(cube_ok.shape, np.int64)
    for k in range(8):
        dx, dy, dz = k & 1, k >> 1 & 1, k >> 2 & 1
        corner = np.s_[dx:vol.shape[0] - 1 + dx, dy:vol.shape[1] - 1 + dy, dz:vol.shape[2] - 1 + dz]
        cube_ok &= mask[corner]
        case |= (vol[corner] > 0).astype(np.int64) << k
    expected = sum(len(TRIANGLES[c]) // 3 for c in case[cube_ok].ravel())
    assert 0 < len(f) == expected < len(full_f)
    assert _oriented_triangles(v, f) <= _oriented_triangles(full_v, full_f)
    assert v[:, 2].max() <= 19.0


def test_slabs_give_the_same_mesh_and_edge_cases():
    vol = torch.from_numpy(_sphere())
    whole_v, whole_f = marching_cubes(vol, 0.0)
    slab_v, slab_f = marching_cubes(vol, 0.0, slab_cubes=1000)  # one x-layer at a time
    assert torch.equal(whole_f, slab_f) and torch.equal(whole_v, slab_v)
    lin, case = crossed_cubes(vol, 0.0)
    assert torch.all(lin[1:] > lin[:-1]) and torch.all((case > 0) & (case < 255))
    v, f = marching_cubes(torch.ones(4, 4, 4), 0.5)
    assert v.shape == (0, 3) and f.shape == (0, 3)
    with pytest.raises(ValueError, match="every side >= 2"):
        marching_cubes(torch.zeros(1, 4, 4), 0.0)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        marching_cubes(vol, 0.0, mask=torch.ones(3, 3, 3, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_mesh():
    vol, level = _fields()["smooth_random"]
    cpu_v, cpu_f = marching_cubes(torch.from_numpy(vol), level)
    gpu_v, gpu_f = marching_cubes(torch.from_numpy(vol).cuda(), level)
    assert gpu_v.is_cuda and torch.equal(gpu_f.cpu(), cpu_f)
    torch.testing.assert_close(gpu_v.cpu(), cpu_v, atol=1e-5, rtol=0)
