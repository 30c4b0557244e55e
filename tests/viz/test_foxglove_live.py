"""The Foxglove live view (gen3d_ros/viz/foxglove_live.py) over a real WebSocket: a `websockets` client speaks the
Foxglove WebSocket protocol (subprotocol foxglove.sdk.v1 / foxglove.websocket.v1), reads serverInfo and the
advertised channels, subscribes, receives the binary message frames and decodes them with protobuf classes built
from the advertised schemas (google.protobuf, independent of the SDK's encoder): the mesh's vertices, triangle
indices and colours, the cloud's points, the frames and the pose."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

websockets = pytest.importorskip("websockets")
pytest.importorskip("foxglove")
pytest.importorskip("google.protobuf")

from foxglove_client import decoder, receive_one  # noqa: E402


@pytest.fixture
def view():
    from gen3d_ros.viz.foxglove_live import FoxgloveLiveView

    v = FoxgloveLiveView(port=0)
    yield v
    v.close()


def completed_mesh(colored: bool):
    from gen3d_ros.io.mesh_msgs import colors_to_rgba_msgs, mesh_to_shape_mesh
    from gen3d_ros.io.messages import make_header, rosbags_factory

    f = rosbags_factory()
    rng = np.random.default_rng(3)
    vertices = rng.uniform(-5, 5, (40, 3))
    faces = rng.integers(0, 40, (60, 3))
    colors = rng.uniform(0, 1, (40, 3)) if colored else None
    msg = f.new("gen3d_ros/msg/CompletedMesh", header=make_header(f, frame_id="lidar", stamp=f.time(sec=5, nanosec=7)),
                mesh=mesh_to_shape_mesh(vertices, faces, f), vertex_colors=colors_to_rgba_msgs(colors, f))
    return msg, vertices, faces, colors


@pytest.mark.parametrize("colored", [True, False])
def test_mesh_arrives_as_a_triangle_list_scene_entity(view, colored):
    msg, vertices, faces, colors = completed_mesh(colored)
    publish = lambda: view.log_message("/gen3d/mesh", "gen3d_ros/msg/CompletedMesh", msg)  # noqa: E731
    channel, payload = asyncio.run(receive_one(view.port, "/gen3d/mesh", publish))
    assert channel["schemaName"] == "foxglove.SceneUpdate"
    update = decoder(channel).FromString(payload)
    (entity,) = update.entities
    assert entity.frame_id == "lidar" and entity.id == "completed_mesh"
    assert (entity.timestamp.seconds, entity.timestamp.nanos) == (5, 7)
    (tri,) = entity.triangles
    points = np.array([[p.x, p.y, p.z] for p in tri.points])
    np.testing.assert_allclose(points, vertices)  # float64 on the wire: exact
    np.testing.assert_array_equal(np.array(tri.indices).reshape(-1, 3), faces)
    rgba = np.array([[c.r, c.g, c.b, c.a] for c in tri.colors])
    assert rgba.shape == (40, 4)
    if colored:
        np.testing.assert_allclose(rgba[:, :3], colors, atol=1e-6)  # CompletedMesh stores float32 colours
    else:  # the nodes' height ramp: varies with z, opaque
        assert np.ptp(rgba[:, :3]) > 0.2 and np.all(rgba[:, 3] == 1.0)


def test_cloud_frames_and_pose_arrive(view):
    from gen3d_ros.io.messages import make_header, rosbags_factory
    from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2
    from gen3d_ros.io.transforms import pose_stamped, tf_message, transform_stamped

    f = rosbags_factory()
    points = np.random.default_rng(0).uniform(-20, 20, (500, 3)).astype(np.float32)
    cloud = arrays_to_pointcloud2(points, f, header=make_header(f, frame_id="lidar", stamp=f.time(sec=1)))
    channel, payload = asyncio.run(receive_one(
        view.port, "/points", lambda: view.log_message("/points", "sensor_msgs/msg/PointCloud2", cloud)))
    pc = decoder(channel).FromString(payload)
    assert pc.frame_id == "lidar" and pc.point_stride == 12 and [fl.name for fl in pc.fields] == ["x", "y", "z"]
    np.testing.assert_array_equal(np.frombuffer(pc.data, "<f4").reshape(-1, 3), points)

    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    tf = tf_message([transform_stamped(T, f, parent_frame="base_link", child_frame="lidar", stamp=f.time(sec=2))], f)
    channel, payload = asyncio.run(receive_one(
        view.port, "/tf", lambda: view.log_message("/tf", "tf2_msgs/msg/TFMessage", tf)))
    (ft,) = decoder(channel).FromString(payload).transforms
    assert (ft.parent_frame_id, ft.child_frame_id) == ("base_link", "lidar")
    assert (ft.translation.x, ft.translation.y, ft.translation.z, ft.rotation.w) == (1.0, 2.0, 3.0, 1.0)

    pose = pose_stamped(T, f, frame_id="base_link", stamp=f.time(sec=3))
    channel, payload = asyncio.run(receive_one(
        view.port, "/camera_pose", lambda: view.log_message("/camera_pose", "geometry_msgs/msg/PoseStamped", pose)))
    p = decoder(channel).FromString(payload)
    assert channel["schemaName"] == "foxglove.PoseInFrame" and p.frame_id == "base_link"
    assert (p.pose.position.x, p.pose.position.z) == (1.0, 3.0)


def test_a_late_subscriber_gets_the_last_mesh(view):
    """Like the nodes' transient-local Marker: nothing is logged after the client subscribes, yet it gets the mesh."""
    msg, vertices, faces, _ = completed_mesh(False)
    view.log_message("/gen3d/mesh", "gen3d_ros/msg/CompletedMesh", msg)
    channel, payload = asyncio.run(receive_one(view.port, "/gen3d/mesh", lambda: None, again=False))
    (entity,) = decoder(channel).FromString(payload).entities
    assert len(entity.triangles[0].points) == len(vertices) and len(entity.triangles[0].indices) == faces.size


def test_unsupported_types_are_not_sent(view):
    assert not view.log_message("/x", "std_msgs/msg/String", object())
