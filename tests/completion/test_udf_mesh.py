"""Meshing of unsigned distance fields, tested on analytic fields (no learning involved)."""

import math

import numpy as np
import pytest

from gen3d_ros.completion.udf_mesh import DEFAULT_LEVEL_FRACTION, mesh_area, mesh_from_udf, sample_mesh, save_mesh
from gen3d_ros.completion.voxelize import voxelize

VOXEL = 0.5
ORIGIN = np.array([-5.0, -5.0, -5.0])
H = VOXEL / 4  # lattice step at the default resolution
LEVEL = DEFAULT_LEVEL_FRACTION * H


def plane_case(offset: float, normal=(0.2, 0.1, 1.0), half: float = 3.0, seed: int = 0):
    """Cells of a square plane patch through (0, 0, offset) and the UDF of the infinite plane."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    xy = np.random.default_rng(seed).uniform(-half, half, (60_000, 2))
    pts = np.c_[xy, (offset - n[0] * xy[:, 0] - n[1] * xy[:, 1]) / n[2]]

    def signed(q):
        return (np.asarray(q, float) - [0.0, 0.0, offset]) @ n

    return voxelize(pts, VOXEL, ORIGIN), (lambda q: np.abs(signed(q))), signed, n


def sphere_case(radius: float, centre=(0.1, 0.2, 0.05), seed: int = 0):
    d = np.random.default_rng(seed).normal(size=(150_000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True) * radius + centre

    def udf(q):
        return np.abs(np.linalg.norm(np.asarray(q, float) - centre, axis=1) - radius)

    return voxelize(pts, VOXEL, ORIGIN), udf


def check_valid(mesh):
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.vertex_colors.shape == mesh.vertices.shape
    assert np.all(np.isfinite(mesh.vertices))
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    assert len(np.unique(mesh.faces.ravel())) == len(mesh.vertices)  # no unreferenced vertices


def face_normals(mesh):
    t = mesh.vertices.astype(np.float64)[mesh.faces]
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


@pytest.mark.parametrize("offset", [0.0, H / 2, 0.03, 0.1])
@pytest.mark.parametrize("normal", [(0.0, 0.0, 1.0), (0.2, 0.1, 1.0)])
def test_plane_gives_one_sheet_on_the_sensor_side_at_every_lattice_offset(offset, normal):
    cells, udf, signed, n = plane_case(offset, normal)
    mesh = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=(0.0, 0.0, 3.0), project_to_surface=False)
    check_valid(mesh)
    d = signed(mesh.vertices)
    assert len(mesh.faces) > 1000
    assert np.all(d > 0), "a vertex of the far sheet survived"
    assert np.all(np.abs(d) <= LEVEL * 1.001), "vertices lie on the level set, within eps of the plane"
    assert np.all(face_normals(mesh) @ n > 0.9), "faces are wound towards the sensor"
    both = mesh_from_udf(udf, cells, VOXEL, ORIGIN, remove_double_walls=False, project_to_surface=False)
    assert (signed(both.vertices) < 0).mean() > 0.4
    assert 1.9 * mesh_area(mesh) < mesh_area(both) < 2.3 * mesh_area(mesh)


def test_the_far_face_of_a_thin_slab_is_kept_as_it_has_no_twin():
    # Faces 0.1 m apart: closer than the shell is thick, so no sheet lies inside the slab. The sheet below the
    # bottom face faces away from the sensor, but it is the bottom face's only copy.
    bottom, top = 0.02, 0.12
    cells = np.unique(np.r_[plane_case(bottom, (0, 0, 1))[0], plane_case(top, (0, 0, 1))[0]], axis=0)

    def udf(q):
        return np.minimum(np.abs(q[:, 2] - bottom), np.abs(q[:, 2] - top))

    above = (0.0, 0.0, 3.0)
    mesh = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=above, project_to_surface=False)
    z = mesh.vertices[:, 2]
    assert (z > top).any() and (z < bottom).any() and not ((z > bottom) & (z < top)).any()
    assert mesh_area(mesh) == pytest.approx(2 * 6.5**2, rel=0.1)
    paired_only = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=above, keep_unpaired=False)
    assert not (paired_only.vertices[:, 2] < (bottom + top) / 2).any()
    projected = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=above)
    d = udf(projected.vertices)
    assert np.mean(d < 0.01 * LEVEL) > 0.85 and np.all(d < LEVEL)  # (off only at the rim of the evaluated band)


def test_a_level_below_half_a_lattice_step_loses_a_plane_half_way_between_lattice_planes():
    # The reason for the default level: the plane at z = h/2 is h/2 from every lattice vertex.
    cells, udf, _, _ = plane_case(H / 2, (0.0, 0.0, 1.0))
    above = (0.0, 0.0, 3.0)
    assert len(mesh_from_udf(udf, cells, VOXEL, ORIGIN, level=0.35 * H, sensor_origin=above).faces) == 0
    assert len(mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=above).faces) > 1000


@pytest.mark.parametrize("radius", [1.0, 1.7])
def test_sphere_seen_from_outside_is_one_closed_sheet_with_the_sphere_area(radius):
    cells, udf = sphere_case(radius)
    area = 4 * math.pi * radius**2
    shell = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=(0, 0, 10), project_to_surface=False)
    check_valid(shell)
    assert np.all(udf(shell.vertices) <= LEVEL * 1.05)  # (marching cubes interpolates linearly on a curve)
    assert mesh_area(shell) == pytest.approx(area, rel=0.15)  # measured: within 1.5 %
    projected = mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=(0, 0, 10))
    check_valid(projected)
    assert np.all(udf(projected.vertices) <= 0.3 * LEVEL)  # measured: 0.25 * LEVEL at most
    assert mesh_area(projected) == pytest.approx(area, rel=0.03)
    # one sheet: every direction from the centre meets the mesh about once (two sheets would double the area)
    both = mesh_from_udf(udf, cells, VOXEL, ORIGIN, remove_double_walls=False, project_to_surface=False)
    assert mesh_area(both) == pytest.approx(2 * area, rel=0.15)
    # closed-ish: the kept halves meet at the silhouette; sample points cover the whole sphere
    pts = sample_mesh(projected, 20_000)
    dirs = (pts - (0.1, 0.2, 0.05)) / radius
    assert dirs[:, 2].min() < -0.95 and dirs[:, 2].max() > 0.95


def test_coarse_to_fine_evaluation_gives_the_same_mesh_as_evaluating_everywhere():
    cells, udf = sphere_case(1.7)
    calls = {"full": 0, "band": 0}

    def counting(key):
        def f(q):
            calls[key] += len(q)
            return udf(q)
        return f

    full = mesh_from_udf(counting("full"), cells, VOXEL, ORIGIN, coarse_to_fine=False)
    band = mesh_from_udf(counting("band"), cells, VOXEL, ORIGIN)
    assert np.array_equal(full.faces, band.faces)
    np.testing.assert_allclose(full.vertices, band.vertices, atol=1e-6)
    assert calls["band"] < 0.6 * calls["full"]


def test_blocks_join_into_one_connected_surface():
    import open3d as o3d

    cells, udf, _, _ = plane_case(0.03)
    above = (0.0, 0.0, 3.0)
    small = mesh_from_udf(udf, cells, VOXEL, ORIGIN, block_cells=5, sensor_origin=above)  # 3 x 3 blocks
    big = mesh_from_udf(udf, cells, VOXEL, ORIGIN, block_cells=32, sensor_origin=above)
    assert len(small.faces) == len(big.faces)
    clusters, sizes, _ = small.to_open3d().cluster_connected_triangles()
    assert len(np.asarray(sizes)) == 1


def test_small_islands_are_removed():
    cells_p, udf_p, _, _ = plane_case(0.03)
    blob_centre = np.array([0.0, 0.0, 2.6])
    cells = np.unique(np.r_[cells_p, voxelize(blob_centre[None], VOXEL, ORIGIN)], axis=0)

    def udf(q):  # the plane plus a 6 cm ball: a speck of a few dozen faces
        return np.minimum(udf_p(q), np.abs(np.linalg.norm(q - blob_centre, axis=1) - 0.06))

    kept = mesh_from_udf(udf, cells, VOXEL, ORIGIN, min_island_faces=0, sensor_origin=(0, 0, 10))
    cleaned = mesh_from_udf(udf, cells, VOXEL, ORIGIN, min_island_faces=100, sensor_origin=(0, 0, 10))
    assert (kept.vertices[:, 2] > 2.0).any()
    assert not (cleaned.vertices[:, 2] > 2.0).any()
    assert len(cleaned.faces) > 1000


def test_far_field_empty_cells_and_torch_decoders():
    import torch

    cells, udf, _, _ = plane_case(0.03)
    assert len(mesh_from_udf(lambda q: np.full(len(q), 1.0), cells, VOXEL, ORIGIN).faces) == 0
    assert len(mesh_from_udf(udf, np.zeros((0, 3), np.int32), VOXEL, ORIGIN).faces) == 0
    via_torch = mesh_from_udf(lambda q: torch.from_numpy(udf(q)).float(), cells, VOXEL, ORIGIN, sensor_origin=(0, 0, 3))
    assert len(via_torch.faces) == len(mesh_from_udf(udf, cells, VOXEL, ORIGIN, sensor_origin=(0, 0, 3)).faces) > 1000
    with pytest.raises(ValueError, match="non-finite"):
        mesh_from_udf(lambda q: np.full(len(q), np.nan), cells, VOXEL, ORIGIN)
    with pytest.raises(ValueError, match="level must be positive"):
        mesh_from_udf(udf, cells, VOXEL, ORIGIN, level=0.0)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_save_mesh_round_trips(tmp_path, suffix):
    import open3d as o3d

    cells, udf = sphere_case(1.0)
    mesh = mesh_from_udf(udf, cells, VOXEL, ORIGIN)
    path = tmp_path / f"sphere{suffix}"
    save_mesh(path, mesh)
    back = o3d.io.read_triangle_mesh(str(path))
    assert len(back.triangles) == len(mesh.faces)
    np.testing.assert_allclose(np.sort(np.asarray(back.vertices), axis=0), np.sort(mesh.vertices, axis=0), atol=1e-4)
    with pytest.raises(ValueError, match=r"mesh files end in \.ply, \.obj, \.glb"):
        save_mesh(tmp_path / "sphere.stl", mesh)


def test_saved_ply_mesh_is_plyfile_binary_marked_coloured_and_atomic(tmp_path, monkeypatch):
    import open3d as o3d
    from plyfile import PlyData

    import gen3d_ros.outputs as outputs
    from gen3d_ros.outputs import GENERATOR, written_by_gen3d

    cells, udf = sphere_case(1.0)
    mesh = mesh_from_udf(udf, cells, VOXEL, ORIGIN)
    path = tmp_path / "sphere.ply"
    save_mesh(path, mesh)
    assert written_by_gen3d(path)
    data = PlyData.read(str(path))
    assert not data.text and data.byte_order == "<" and data.comments == [f"generated by {GENERATOR}"]
    assert [p.name for p in data["vertex"].properties] == ["x", "y", "z", "red", "green", "blue"]
    assert data["vertex"]["x"].dtype == np.float32 and data["vertex"]["red"].dtype == np.uint8
    np.testing.assert_array_equal(data["vertex"]["x"], mesh.vertices[:, 0])
    expected = np.rint(np.clip(mesh.vertex_colors, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.stack([data["vertex"][c] for c in ("red", "green", "blue")], 1), expected)
    np.testing.assert_array_equal(np.stack(data["face"]["vertex_indices"]), mesh.faces)
    back = o3d.io.read_triangle_mesh(str(path))  # open3d reads plyfile's output, colours included
    np.testing.assert_allclose(np.asarray(back.vertex_colors), expected / 255.0, atol=1e-6)

    # A failed write (here: the final rename) leaves the previous mesh and no temporary behind.
    before = path.read_bytes()
    monkeypatch.setattr(outputs.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("simulated")))
    for target in (path, tmp_path / "sphere.obj"):
        with pytest.raises(OSError, match="simulated"):
            save_mesh(target, mesh)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sphere.ply"]
