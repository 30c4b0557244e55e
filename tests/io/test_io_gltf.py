"""``.glb`` meshes (gen3d_ros/io/gltf.py, udf_mesh.save_mesh): written through outputs.py, read back equal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gen3d_ros.completion.mesh import TriangleMesh
from gen3d_ros.completion.udf_mesh import save_mesh
from gen3d_ros.io.gltf import glb_bytes, read_glb, write_glb
from gen3d_ros.outputs import OutputError, prepare_output, written_by_gen3d


def _box_mesh(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube's 8 corners shifted by a random offset, 12 triangles, per-vertex colours."""
    rng = np.random.default_rng(seed)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64) + rng.normal(size=3)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int64)
    colors = rng.integers(0, 256, size=(8, 3)).astype(np.uint8)
    return corners, faces, colors


def test_glb_round_trip_keeps_vertices_faces_and_colours(tmp_path):
    vertices, faces, colors = _box_mesh()
    path = write_glb(tmp_path / "cube.glb", vertices, faces, colors)
    v, f, c = read_glb(path)
    np.testing.assert_allclose(v, vertices.astype(np.float32), atol=0)  # stored as float32, exactly
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_array_equal(c[:, :3], colors)
    np.testing.assert_array_equal(c[:, 3], 255)


def test_glb_is_a_valid_gltf2_container_marked_as_ours(tmp_path):
    vertices, faces, _ = _box_mesh(1)
    data = glb_bytes(vertices, faces)
    assert data[:4] == b"glTF" and int.from_bytes(data[4:8], "little") == 2
    assert int.from_bytes(data[8:12], "little") == len(data)
    length = int.from_bytes(data[12:16], "little")
    tree = json.loads(data[20:20 + length])
    assert tree["asset"]["version"] == "2.0" and tree["asset"]["generator"].startswith("gen3d_ros")
    assert tree["accessors"][tree["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]["count"] == 8
    path = tmp_path / "m.glb"
    path.write_bytes(data)
    assert written_by_gen3d(path)
    foreign = tmp_path / "foreign.glb"
    foreign.write_bytes(data.replace(b"gen3d_ros", b"someone__"))
    assert not written_by_gen3d(foreign)
    with pytest.raises(OutputError):
        prepare_output(foreign, force=True)  # --force never replaces a glTF file that is not ours


def test_save_mesh_writes_glb_like_ply(tmp_path):
    vertices, faces, colors = _box_mesh(2)
    mesh = TriangleMesh(vertices.astype(np.float32), faces.astype(np.int32), colors.astype(np.float32) / 255.0)
    save_mesh(tmp_path / "scene.glb", mesh)
    v, f, c = read_glb(tmp_path / "scene.glb")
    np.testing.assert_array_equal(v, mesh.vertices.astype(np.float64))
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_array_equal(c[:, :3], colors)
    with pytest.raises(ValueError, match=".glb"):
        save_mesh(tmp_path / "scene.stl", mesh)
