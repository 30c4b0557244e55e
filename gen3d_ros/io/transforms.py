"""Rigid transforms (4x4 numpy) <-> ``geometry_msgs`` Pose / Transform / PoseStamped / TransformStamped and
``tf2_msgs/TFMessage``, for either message world.

Naming (DESIGN.md): ``T_target_source`` maps points from frame ``source`` to frame ``target``,
``p_target = T_target_source @ p_source``. As a ROS message this is the pose of ``source`` expressed in
``target``: ``PoseStamped(header.frame_id=target)`` and ``TransformStamped(header.frame_id=target,
child_frame_id=source)``, which tf2 reads as "the transform from ``target`` (parent) to ``source`` (child)".
Quaternions in messages are (x, y, z, w), unit norm, ``w >= 0`` as written here. Metres, radians (REP-103).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from gen3d_ros.geometry.rigid import invert_rigid, matrix_to_quaternion_xyzw  # noqa: F401  (re-exported)
from gen3d_ros.io.messages import MessageFactory, make_header


def quaternion_xyzw_to_matrix(q: Any) -> np.ndarray:
    """(x, y, z, w) quaternion (normalised here) -> (3, 3) rotation matrix.

    Raises ValueError for a non-finite or zero quaternion (an uninitialised ``geometry_msgs/Quaternion`` of
    rosbags is all zeros)."""
    x, y, z, w = (float(v) for v in q)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"quaternion (x={x}, y={y}, z={z}, w={w}) is not a rotation (norm {n})")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def check_rigid(T: np.ndarray, what: str = "transform") -> np.ndarray:
    """``T`` as a (4, 4) float64 rigid transform; ValueError naming ``what`` if it is not finite and rigid."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{what} must be 4x4, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"{what} has non-finite entries: {T.tolist()}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ValueError(f"{what} rotation is not orthonormal with det +1: {R.tolist()}")
    return T


def matrix_to_pose(T: np.ndarray, factory: MessageFactory) -> Any:
    """``geometry_msgs/Pose`` of a (4, 4) rigid transform ``T_target_source``: the pose of ``source`` in ``target``."""
    T = check_rigid(T, "pose")
    q = matrix_to_quaternion_xyzw(T[:3, :3])
    return factory.new(
        "geometry_msgs/msg/Pose",
        position=factory.new("geometry_msgs/msg/Point", x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
        orientation=factory.new("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                w=float(q[3])))


def pose_to_matrix(pose: Any) -> np.ndarray:
    """``geometry_msgs/Pose`` (either world) -> (4, 4) float64 ``T_target_source``; ValueError if not finite or
    the quaternion is zero."""
    p, o = pose.position, pose.orientation
    t = np.array([float(p.x), float(p.y), float(p.z)])
    if not np.isfinite(t).all():
        raise ValueError(f"pose position is not finite: {t.tolist()}")
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix((o.x, o.y, o.z, o.w))
    T[:3, 3] = t
    return T


def matrix_to_transform(T: np.ndarray, factory: MessageFactory) -> Any:
    """``geometry_msgs/Transform`` of a (4, 4) rigid transform (translation metres, rotation quaternion)."""
    pose = matrix_to_pose(T, factory)
    return factory.new(
        "geometry_msgs/msg/Transform",
        translation=factory.new("geometry_msgs/msg/Vector3", x=pose.position.x, y=pose.position.y,
                                z=pose.position.z),
        rotation=pose.orientation)


def pose_stamped(T_target_source: np.ndarray, factory: MessageFactory, *, frame_id: str, stamp: Any) -> Any:
    """``geometry_msgs/PoseStamped``: the pose of frame ``source`` in frame ``frame_id`` (= target)."""
    return factory.new("geometry_msgs/msg/PoseStamped", header=make_header(factory, frame_id=frame_id, stamp=stamp),
                       pose=matrix_to_pose(T_target_source, factory))


def transform_stamped(T_parent_child: np.ndarray, factory: MessageFactory, *, parent_frame: str, child_frame: str,
                      stamp: Any) -> Any:
    """``geometry_msgs/TransformStamped`` for tf2: ``header.frame_id = parent_frame``, ``child_frame_id =
    child_frame``, transform = ``T_parent_child`` (maps child-frame points into the parent frame)."""
    if not parent_frame or not child_frame:
        raise ValueError(f"a TF transform needs both frame ids, got parent={parent_frame!r}, child={child_frame!r}")
    if parent_frame == child_frame:
        raise ValueError(f"a TF transform cannot connect frame {parent_frame!r} to itself")
    return factory.new("geometry_msgs/msg/TransformStamped",
                       header=make_header(factory, frame_id=parent_frame, stamp=stamp),
                       child_frame_id=str(child_frame), transform=matrix_to_transform(T_parent_child, factory))


def transform_to_matrix(transform: Any) -> np.ndarray:
    """``geometry_msgs/Transform`` (either world) -> ``T_parent_child`` (4x4 float64, metres); ValueError if not
    finite or the quaternion is zero."""
    t, r = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix((r.x, r.y, r.z, r.w))
    T[:3, 3] = [float(t.x), float(t.y), float(t.z)]
    if not np.isfinite(T).all():
        raise ValueError(f"transform translation is not finite: {T[:3, 3].tolist()}")
    return T


def add_tf_message(buffer: Any, msg: Any, *, static: bool) -> list[str]:
    """Put the transforms of a ``tf2_msgs/TFMessage`` (either world) into ``buffer`` (a
    :class:`gen3d_ros.geometry.tf_buffer.TransformBuffer`); the reasons of those skipped as malformed."""
    skipped = []
    for t in msg.transforms:
        stamp = int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec)
        try:
            buffer.set_transform(str(t.header.frame_id), str(t.child_frame_id), stamp,
                                 transform_to_matrix(t.transform), static=static)
        except ValueError as exc:
            skipped.append(f"{t.header.frame_id!r} -> {t.child_frame_id!r}: {exc}")
    return skipped


def tf_message(transforms: Iterable[Any], factory: MessageFactory) -> Any:
    """``tf2_msgs/TFMessage`` (what ``/tf`` and ``/tf_static`` carry) of ``TransformStamped`` messages."""
    return factory.new("tf2_msgs/msg/TFMessage", transforms=list(transforms))
