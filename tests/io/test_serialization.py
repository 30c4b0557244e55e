"""``serialized_size``: the CDR bytes of a message, by the layout formula and by both worlds' serializers."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from completion_fakes import grid_mesh
from gen3d_ros.io.mesh_msgs import colors_to_rgba_msgs, mesh_to_marker, mesh_to_shape_mesh
from gen3d_ros.io.messages import make_header, rclpy_factory, rosbags_factory
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2
from gen3d_ros.io.serialization import serialized_size
from gen3d_ros.io.typestore import get_gen3d_typestore


def align(offset: int, n: int) -> int:
    return (offset + n - 1) // n * n


def completed_mesh_bytes(frame_id: str, n_vertices: int, n_triangles: int, n_colors: int, model_id: str) -> int:
    """CDR size of a ``gen3d_ros/CompletedMesh`` from its layout (offsets from the end of the 4-byte header)."""
    o = 8                                   # header.stamp: int32 sec, uint32 nanosec
    o += 4 + len(frame_id) + 1              # header.frame_id: uint32 length, characters, NUL
    o = align(o, 4) + 4 + 12 * n_triangles  # mesh.triangles: length, uint32[3] each
    o = align(o, 4) + 4                     # mesh.vertices: length,
    o = align(o, 8) + 24 * n_vertices       # then float64 x, y, z each, 8-byte aligned
    o = align(o, 4) + 4 + 16 * n_colors     # vertex_colors: length, float32 r, g, b, a each
    o += 5 * 4                              # voxel_size, steps, input_points, dropped_points, latency_ms
    o += 4 + len(model_id) + 1              # model_id
    return 4 + o


def completed_mesh(factory, frame_id: str, n: int, colors: bool, model_id: str):
    mesh = grid_mesh(n)
    return factory.new("gen3d_ros/msg/CompletedMesh", header=make_header(factory, frame_id=frame_id, stamp=1.5),
                       mesh=mesh_to_shape_mesh(mesh.vertices, mesh.faces, factory),
                       vertex_colors=colors_to_rgba_msgs(mesh.vertex_colors if colors else None, factory),
                       voxel_size=0.2, steps=3, input_points=10, dropped_points=1, latency_ms=5.0, model_id=model_id)


@pytest.mark.parametrize("frame_id, model_id", [("lidar", "hgca:demo"), ("os_sensor", "classical-poisson"),
                                                ("x", "")])
@pytest.mark.parametrize("colors", [False, True])
def test_completed_mesh_bytes_follow_the_layout_formula(frame_id: str, model_id: str, colors: bool) -> None:
    factory = rosbags_factory()
    msg = completed_mesh(factory, frame_id, 11, colors, model_id)  # 121 vertices, 200 triangles
    expected = completed_mesh_bytes(frame_id, 121, 200, 121 if colors else 0, model_id)
    assert serialized_size(msg) == expected
    assert len(get_gen3d_typestore().serialize_cdr(msg, "gen3d_ros/msg/CompletedMesh")) == expected


@pytest.mark.parametrize("colors", [False, True])
def test_marker_bytes_grow_by_72_per_triangle_and_48_more_with_colours(colors: bool) -> None:
    factory = rosbags_factory()
    mesh = grid_mesh(11)
    sizes = {}
    for n in (0, 1, 7, 200):
        faces = mesh.faces[:n]
        sizes[n] = serialized_size(mesh_to_marker(mesh.vertices, faces, factory,
                                                  vertex_colors=mesh.vertex_colors if colors else None))
    per_triangle = 3 * (24 + (16 if colors else 0))  # a Point (3 float64) per corner, + a ColorRGBA (4 float32)
    assert {n: sizes[n] - sizes[0] for n in sizes} == {n: n * per_triangle for n in sizes}


def test_serialized_bytes_and_memoryviews_are_their_length() -> None:
    data = bytes(range(10)) * 7
    assert serialized_size(data) == 70 == serialized_size(memoryview(data)) == serialized_size(bytearray(data))


def test_unknown_type_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="nope/msg/Nothing"):
        serialized_size(object(), "nope/msg/Nothing")


def test_rclpy_messages_measure_what_rclpy_serializes() -> None:
    try:
        serialization = importlib.import_module("rclpy.serialization")
        factory = rclpy_factory()
        msg = completed_mesh(factory, "lidar", 11, True, "hgca:demo")
    except Exception as exc:  # noqa: BLE001 - ImportError, or gen3d_ros/msg not built into this environment
        pytest.skip(f"rclpy messages unavailable here: {type(exc).__name__}: {exc}")
    mesh = grid_mesh(9)
    cloud = arrays_to_pointcloud2(np.random.default_rng(0).normal(size=(57, 3)).astype(np.float32), factory,
                                  frame_id="lidar")
    marker = mesh_to_marker(mesh.vertices, mesh.faces, factory, vertex_colors=mesh.vertex_colors)
    for message in (msg, cloud, marker, factory.new("diagnostic_msgs/msg/DiagnosticArray")):
        assert serialized_size(message) == len(serialization.serialize_message(message))
    assert serialized_size(msg) == completed_mesh_bytes("lidar", 121, 200, 121, "hgca:demo")
