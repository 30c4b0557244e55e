"""Meshes <-> Marker TRIANGLE_LIST / shape_msgs/Mesh in both message worlds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gen3d_ros.io.mesh_msgs import (
    TRIANGLE_LIST,
    colors_to_rgba_msgs,
    marker_to_mesh,
    mesh_to_marker,
    mesh_to_shape_mesh,
    shape_mesh_to_arrays,
)
from gen3d_ros.io.messages import rclpy_factory, rosbags_factory
from gen3d_ros.io.messages import make_header
from gen3d_ros.io.typestore import get_gen3d_typestore


@pytest.fixture(params=[rosbags_factory, rclpy_factory], ids=["rosbags", "rclpy"])
def factory(request):
    return request.param()


def tetrahedron():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8)
    return vertices, faces, colors


def test_marker_holds_one_point_and_colour_per_triangle_corner(factory):
    vertices, faces, colors = tetrahedron()
    header = make_header(factory, frame_id="map", stamp=4.5)
    marker = mesh_to_marker(vertices, faces, factory, header=header, vertex_colors=colors, ns="scene", marker_id=3)

    assert (marker.type, marker.action, marker.ns, marker.id) == (TRIANGLE_LIST, 0, "scene", 3)
    assert marker.header.frame_id == "map" and marker.header.stamp.sec == 4
    assert (marker.pose.orientation.w, marker.pose.orientation.x, marker.pose.position.z) == (1.0, 0.0, 0.0)
    assert (marker.scale.x, marker.scale.y, marker.scale.z) == (1.0, 1.0, 1.0)
    assert marker.frame_locked is False and len(marker.points) == 12 and len(marker.colors) == 12

    corner = marker.points[4]  # face 1, corner 1 -> vertex 1
    assert (corner.x, corner.y, corner.z) == (1.0, 0.0, 0.0)
    c = marker.colors[5]  # face 1, corner 2 -> vertex 3 (white)
    assert (c.r, c.g, c.b, c.a) == (1.0, 1.0, 1.0, 1.0)

    back_vertices, back_faces, back_colors = marker_to_mesh(marker)
    np.testing.assert_array_equal(back_vertices, vertices[faces.reshape(-1)])
    np.testing.assert_array_equal(back_faces, np.arange(12).reshape(4, 3))
    np.testing.assert_allclose(back_colors[:, :3], colors[faces.reshape(-1)] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(back_colors[:, 3], 1.0)


def test_uniform_colour_marker_has_no_per_point_colours(factory):
    vertices, faces, _ = tetrahedron()
    marker = mesh_to_marker(vertices, faces, factory, color=(0.1, 0.2, 0.3, 0.5))
    assert len(marker.colors) == 0
    assert np.allclose([marker.color.r, marker.color.g, marker.color.b, marker.color.a], [0.1, 0.2, 0.3, 0.5])
    assert marker_to_mesh(marker)[2] is None


def test_float_vertex_colours_with_alpha_are_kept(factory):
    vertices, faces, _ = tetrahedron()
    rgba = np.array([[0.5, 0.25, 0.0, 0.75]] * 4)
    _, _, colors = marker_to_mesh(mesh_to_marker(vertices, faces, factory, vertex_colors=rgba))
    np.testing.assert_array_equal(colors, np.tile(np.float32([0.5, 0.25, 0.0, 0.75]), (12, 1)))


def test_rclpy_marker_serializes_and_its_points_equal_constructed_ones():
    from geometry_msgs.msg import Point
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    vertices, faces, colors = tetrahedron()
    marker = mesh_to_marker(vertices + 0.5, faces, rclpy_factory(), vertex_colors=colors)
    assert isinstance(marker, Marker)
    assert marker.points[1] == Point(x=0.5, y=1.5, z=0.5)
    assert marker.colors[0] == ColorRGBA(r=1.0, g=0.0, b=0.0, a=1.0)
    back = deserialize_message(serialize_message(marker), Marker)
    v, _, c = marker_to_mesh(back)
    np.testing.assert_array_equal(v, vertices[faces.reshape(-1)] + 0.5)
    np.testing.assert_allclose(c[:, :3], colors[faces.reshape(-1)] / 255.0, rtol=1e-6)


def test_rosbags_marker_survives_cdr():
    store = get_gen3d_typestore()
    vertices, faces, colors = tetrahedron()
    marker = mesh_to_marker(vertices, faces, rosbags_factory(), vertex_colors=colors)
    back = store.deserialize_cdr(store.serialize_cdr(marker, "visualization_msgs/msg/Marker"),
                                 "visualization_msgs/msg/Marker")
    v, f, c = marker_to_mesh(back)
    np.testing.assert_array_equal(v, vertices[faces.reshape(-1)])
    assert back.pose.orientation.w == 1.0 and c.shape == (12, 4)


def test_marker_to_mesh_applies_marker_pose_and_scale(factory):
    vertices, faces, _ = tetrahedron()
    marker = mesh_to_marker(vertices, faces, factory)
    marker.scale.x = marker.scale.y = marker.scale.z = 2.0
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = 10.0, 0.0, -1.0
    s = np.sqrt(0.5)  # 90 degrees about z: (x, y) -> (-y, x)
    marker.pose.orientation.z, marker.pose.orientation.w = s, s
    v, _, _ = marker_to_mesh(marker)
    corners = vertices[faces.reshape(-1)] * 2.0
    expected = np.stack([-corners[:, 1], corners[:, 0], corners[:, 2]], axis=1) + [10.0, 0.0, -1.0]
    np.testing.assert_allclose(v, expected, atol=1e-12)


def test_invalid_meshes_raise_clear_errors(factory):
    vertices, faces, colors = tetrahedron()
    with pytest.raises(ValueError, match=r"faces index vertices 0\.\.4 but there are 4 vertices"):
        mesh_to_marker(vertices, np.array([[0, 1, 4]]), factory)
    with pytest.raises(ValueError, match=r"faces index vertices -1\.\.2"):
        mesh_to_shape_mesh(vertices, np.array([[0, -1, 2]]), factory)
    bad = vertices.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite row\(s\), first at index 2"):
        mesh_to_marker(bad, faces, factory)
    with pytest.raises(ValueError, match=r"range 0\.0\.\.255\.0.*0\.\.1"):
        mesh_to_marker(vertices, faces, factory, vertex_colors=colors.astype(np.float64))
    with pytest.raises(ValueError, match=r"vertex_colors must be \(4, 3\) or \(4, 4\)"):
        mesh_to_marker(vertices, faces, factory, vertex_colors=colors[:3])
    with pytest.raises(ValueError, match=r"faces must be an \(F, 3\) integer array"):
        mesh_to_marker(vertices, faces.astype(np.float32), factory)


def test_marker_of_wrong_type_or_size_is_rejected(factory):
    vertices, faces, _ = tetrahedron()
    marker = mesh_to_marker(vertices, faces, factory)
    marker.points = marker.points[:11]
    with pytest.raises(ValueError, match="multiple of 3 points, got 11"):
        marker_to_mesh(marker)
    marker.type = 8
    with pytest.raises(ValueError, match="not TRIANGLE_LIST"):
        marker_to_mesh(marker)


def test_empty_mesh_gives_an_empty_marker(factory):
    marker = mesh_to_marker(np.zeros((0, 3)), np.zeros((0, 3), np.int64), factory)
    assert len(marker.points) == 0
    v, f, c = marker_to_mesh(marker)
    assert v.shape == (0, 3) and f.shape == (0, 3) and c is None


def test_shape_mesh_round_trips(factory):
    vertices, faces, _ = tetrahedron()
    msg = mesh_to_shape_mesh(vertices * 3.0, faces, factory)
    assert len(msg.triangles) == 4 and len(msg.vertices) == 4
    assert list(msg.triangles[3].vertex_indices) == [1, 2, 3]
    v, f = shape_mesh_to_arrays(msg)
    np.testing.assert_array_equal(v, vertices * 3.0)
    np.testing.assert_array_equal(f, faces)
    assert f.dtype == np.int64


def test_shape_mesh_serializes_in_both_worlds():
    from rclpy.serialization import deserialize_message, serialize_message
    from shape_msgs.msg import Mesh

    vertices, faces, _ = tetrahedron()
    back = deserialize_message(serialize_message(mesh_to_shape_mesh(vertices, faces, rclpy_factory())), Mesh)
    np.testing.assert_array_equal(shape_mesh_to_arrays(back)[1], faces)

    store = get_gen3d_typestore()
    raw = store.serialize_cdr(mesh_to_shape_mesh(vertices, faces, rosbags_factory()), "shape_msgs/msg/Mesh")
    v, f = shape_mesh_to_arrays(store.deserialize_cdr(raw, "shape_msgs/msg/Mesh"))
    np.testing.assert_array_equal(v, vertices)
    np.testing.assert_array_equal(f, faces)


def test_shape_mesh_with_out_of_range_triangle_is_rejected(factory):
    vertices, faces, _ = tetrahedron()
    msg = mesh_to_shape_mesh(vertices, faces, factory)
    msg.vertices = msg.vertices[:3]
    with pytest.raises(ValueError, match=r"index vertices 0\.\.3 but there are 3 vertices"):
        shape_mesh_to_arrays(msg)


def test_colors_to_rgba_msgs_accepts_uint8_and_float(factory):
    msgs = colors_to_rgba_msgs(np.array([[255, 0, 51]], np.uint8), factory)
    assert len(msgs) == 1
    assert (msgs[0].r, msgs[0].g, msgs[0].a) == (1.0, 0.0, 1.0) and msgs[0].b == pytest.approx(0.2)
    msgs = colors_to_rgba_msgs(np.array([[0.1, 0.2, 0.3, 0.4], [1, 1, 1, 0]]), factory)
    assert [m.a for m in msgs] == [pytest.approx(0.4), 0.0]


def test_completed_mesh_message_carries_mesh_and_vertex_colours():
    factory = rosbags_factory()
    store = get_gen3d_typestore()
    vertices, faces, colors = tetrahedron()
    msg = factory.new(
        "gen3d_ros/msg/CompletedMesh",
        header=make_header(factory, frame_id="lidar", stamp=1.0),
        mesh=mesh_to_shape_mesh(vertices, faces, factory),
        vertex_colors=colors_to_rgba_msgs(colors, factory),
        voxel_size=0.1, input_points=100, model_id="classical-poisson",
    )
    back = store.deserialize_cdr(store.serialize_cdr(msg, "gen3d_ros/msg/CompletedMesh"), "gen3d_ros/msg/CompletedMesh")
    v, f = shape_mesh_to_arrays(back.mesh)
    np.testing.assert_array_equal(f, faces)
    assert [c.g for c in back.vertex_colors] == [0.0, 1.0, 0.0, 1.0]


def test_50k_triangle_mesh_converts_in_well_under_two_seconds(factory):
    rng = np.random.default_rng(0)
    vertices = rng.uniform(-5, 5, (25_000, 3))
    faces = rng.integers(0, 25_000, (50_000, 3))
    colors = rng.integers(0, 256, (25_000, 3), dtype=np.uint8)
    start = time.perf_counter()
    marker = mesh_to_marker(vertices, faces, factory, vertex_colors=colors)
    built = time.perf_counter() - start
    v, _, c = marker_to_mesh(marker)
    read = time.perf_counter() - start - built
    print(f"\n{factory.name}: 50k-triangle coloured Marker built in {built:.3f} s, read back in {read:.3f} s")
    assert len(marker.points) == 150_000 and len(marker.colors) == 150_000
    np.testing.assert_array_equal(v, vertices[faces.reshape(-1)])
    assert built < 2.0 and read < 1.0


def test_empty_vertex_colours_mean_a_uniformly_coloured_mesh(factory):
    vertices, faces, _ = tetrahedron()
    marker = mesh_to_marker(vertices, faces, factory, vertex_colors=np.zeros((0, 3), np.float32))
    assert len(marker.colors) == 0 and len(marker.points) == 12
    assert colors_to_rgba_msgs(np.zeros((0, 3), np.float32), factory) == []
    assert colors_to_rgba_msgs(None, factory) == []
