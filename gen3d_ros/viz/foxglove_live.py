"""A Foxglove WebSocket server of gen3d data, viewable in the Foxglove app without a ROS install (``Open connection``
-> ``Foxglove WebSocket`` -> ``ws://localhost:8765``). Messages of either world (rclpy or rosbags) go in; the
``foxglove-sdk`` serves them as Foxglove schemas (protobuf):

- ``PointCloud2`` (the input cloud, completed voxels) -> ``foxglove.PointCloud`` (float32 x, y, z, metres, in the
  cloud's frame);
- ``gen3d_ros/CompletedMesh`` -> ``foxglove.SceneUpdate`` with one entity (id ``completed_mesh``) holding one
  ``TriangleListPrimitive``: the mesh's vertices + triangle indices, per-vertex colours (the message's, or the
  nodes' height ramp when it has none), in the mesh's frame;
- ``tf2_msgs/TFMessage`` -> ``foxglove.FrameTransforms``; ``geometry_msgs/PoseStamped`` (the robot's camera pose)
  -> ``foxglove.PoseInFrame``.

The last message of each channel is sent again when a client subscribes, so an app opened later still sees the
last mesh (like the nodes' transient-local Marker). Each view has its own ``foxglove.Context``: several can run in
one process. The server listens on ``host`` (default loopback; ``0.0.0.0`` to reach it from another machine).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

#: the ROS message types :meth:`FoxgloveLiveView.log_message` turns into Foxglove messages
SUPPORTED_TYPES = ("sensor_msgs/msg/PointCloud2", "gen3d_ros/msg/CompletedMesh", "tf2_msgs/msg/TFMessage",
                   "geometry_msgs/msg/PoseStamped")
DEFAULT_PORT = 8765


def _timestamp(stamp: Any) -> Any:
    from foxglove.messages import Timestamp

    return Timestamp(int(stamp.sec), int(stamp.nanosec))


def _pose(position: Any = None, orientation: Any = None) -> Any:
    from foxglove.messages import Pose, Quaternion, Vector3

    if position is None:
        return Pose(position=Vector3(x=0.0, y=0.0, z=0.0), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
    return Pose(position=Vector3(x=float(position.x), y=float(position.y), z=float(position.z)),
                orientation=Quaternion(x=float(orientation.x), y=float(orientation.y), z=float(orientation.z),
                                       w=float(orientation.w)))


def point_cloud(msg: Any) -> Any:
    """``sensor_msgs/PointCloud2`` -> ``foxglove.PointCloud`` of its finite points (packed float32 x, y, z)."""
    from foxglove.messages import PackedElementField, PackedElementFieldNumericType, PointCloud

    from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays

    points = np.ascontiguousarray(pointcloud2_to_arrays(msg).points, dtype="<f4")
    fields = [PackedElementField(name=axis, offset=4 * i, type=PackedElementFieldNumericType.Float32)
              for i, axis in enumerate("xyz")]
    return PointCloud(timestamp=_timestamp(msg.header.stamp), frame_id=str(msg.header.frame_id), pose=_pose(),
                      point_stride=12, fields=fields, data=points.tobytes())


def mesh_scene_update(msg: Any, entity_id: str = "completed_mesh") -> Any:
    """``gen3d_ros/CompletedMesh`` -> ``foxglove.SceneUpdate``: one entity with a ``TriangleListPrimitive``
    (vertices as points, triangles as indices, one colour per vertex)."""
    from foxglove.messages import Color, Point3, SceneEntity, SceneUpdate, TriangleListPrimitive

    from gen3d_ros.completion.mesh import height_colors
    from gen3d_ros.io.mesh_msgs import shape_mesh_to_arrays

    vertices, faces = shape_mesh_to_arrays(msg.mesh)
    if len(msg.vertex_colors) == len(vertices) and len(vertices):
        rgba = np.array([[c.r, c.g, c.b, c.a] for c in msg.vertex_colors], np.float64)
    else:
        rgba = np.c_[np.clip(height_colors(vertices), 0.0, 1.0), np.ones(len(vertices))]
    points = [Point3(x=x, y=y, z=z) for x, y, z in vertices.tolist()]
    colors = [Color(r=r, g=g, b=b, a=a) for r, g, b, a in rgba.tolist()]
    triangles = TriangleListPrimitive(pose=_pose(), points=points, colors=colors,
                                      indices=faces.reshape(-1).astype(np.int64).tolist())
    entity = SceneEntity(timestamp=_timestamp(msg.header.stamp), frame_id=str(msg.header.frame_id), id=entity_id,
                         frame_locked=True, triangles=[triangles])
    return SceneUpdate(entities=[entity])


def frame_transforms(msg: Any) -> Any:
    """``tf2_msgs/TFMessage`` -> ``foxglove.FrameTransforms`` (parent -> child, metres, unit quaternions)."""
    from foxglove.messages import FrameTransform, FrameTransforms, Quaternion, Vector3

    out = []
    for t in msg.transforms:
        tr, rot = t.transform.translation, t.transform.rotation
        out.append(FrameTransform(timestamp=_timestamp(t.header.stamp), parent_frame_id=str(t.header.frame_id),
                                  child_frame_id=str(t.child_frame_id),
                                  translation=Vector3(x=float(tr.x), y=float(tr.y), z=float(tr.z)),
                                  rotation=Quaternion(x=float(rot.x), y=float(rot.y), z=float(rot.z),
                                                      w=float(rot.w))))
    return FrameTransforms(transforms=out)


def pose_in_frame(msg: Any) -> Any:
    """``geometry_msgs/PoseStamped`` -> ``foxglove.PoseInFrame``."""
    from foxglove.messages import PoseInFrame

    return PoseInFrame(timestamp=_timestamp(msg.header.stamp), frame_id=str(msg.header.frame_id),
                       pose=_pose(msg.pose.position, msg.pose.orientation))


#: msgtype -> (converter, channel class name in foxglove.channels)
_CONVERTERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "sensor_msgs/msg/PointCloud2": (point_cloud, "PointCloudChannel"),
    "gen3d_ros/msg/CompletedMesh": (mesh_scene_update, "SceneUpdateChannel"),
    "tf2_msgs/msg/TFMessage": (frame_transforms, "FrameTransformsChannel"),
    "geometry_msgs/msg/PoseStamped": (pose_in_frame, "PoseInFrameChannel"),
}


class FoxgloveLiveView:
    """A Foxglove WebSocket server; :meth:`log_message` publishes a ROS message on a Foxglove topic.

        view = FoxgloveLiveView(port=8765)
        view.log_message("/completion_node/mesh", "gen3d_ros/msg/CompletedMesh", msg)
        view.close()

    ``port`` 0 picks a free port (:attr:`port`). Thread-safe: nodes log from their own threads."""

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *, name: str = "gen3d_ros") -> None:
        import foxglove

        self._lock = threading.Lock()
        self._channels: dict[str, Any] = {}
        self._last: dict[int, Any] = {}  # channel id -> last Foxglove message
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name=name, host=host, port=port, context=self.context,
                                            server_listener=_Resend(self))
        self.host = host

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server.port)

    @property
    def url(self) -> str:
        return f"ws://{'localhost' if self.host in ('127.0.0.1', '0.0.0.0') else self.host}:{self.port}"

    def _channel(self, topic: str, msgtype: str) -> Any:
        with self._lock:
            channel = self._channels.get(topic)
            if channel is None:
                import foxglove.channels

                channel = getattr(foxglove.channels, _CONVERTERS[msgtype][1])(topic, context=self.context)
                self._channels[topic] = channel
            return channel

    def log_message(self, topic: str, msgtype: str, msg: Any, log_time_ns: int | None = None) -> bool:
        """Publish ``msg`` (ROS type ``msgtype``, either world) on ``topic``; False when the type is not one of
        :data:`SUPPORTED_TYPES` (nothing sent). ValueError for a malformed message (the caller logs it)."""
        entry = _CONVERTERS.get(msgtype)
        if entry is None:
            return False
        converted = entry[0](msg)
        channel = self._channel(topic, msgtype)
        with self._lock:
            self._last[channel.id()] = (channel, converted)
        channel.log(converted, log_time=log_time_ns)
        return True

    def resend(self, channel_id: int) -> None:
        """Send the last message of a channel again (a client just subscribed to it)."""
        with self._lock:
            item = self._last.get(channel_id)
        if item is not None:
            item[0].log(item[1])

    def close(self) -> None:
        self.server.stop()


def _listener_base() -> type:
    import foxglove

    return foxglove.ServerListener  # a Protocol with a default for every callback the server makes


class _Resend(_listener_base()):  # type: ignore[misc]
    """Server listener: a new subscriber gets the channel's last message at once (from a thread of its own: the
    server thread that calls us must not wait for the channel)."""

    def __init__(self, view: FoxgloveLiveView) -> None:
        self._view = view

    def on_subscribe(self, client: Any, channel: Any) -> None:
        threading.Thread(target=self._view.resend, args=(channel.id,), daemon=True).start()
