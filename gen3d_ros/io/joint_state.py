"""``sensor_msgs/JointState`` and ``trajectory_msgs/JointTrajectory`` <-> numpy, for either message world.

Joint values are radians (revolute, continuous) or metres (prismatic), in the order of the ``joint_names``
given (the robot's actuated joints, ``ForwardKinematics.joint_names``); a message may list joints in any order.
``time_from_start`` is seconds from ``header.stamp`` (trajectory_msgs convention; a zero stamp means "now").
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gen3d_ros.io.messages import MessageFactory, float64_sequence, make_header


def joint_state_msg(joint_names: Sequence[str], positions: Any, factory: MessageFactory, *, header: Any = None,
                    velocities: Any = None) -> Any:
    """A ``sensor_msgs/JointState`` of ``factory``'s world.

    Args:
        joint_names: J names; positions: (J,) radians/metres; velocities: (J,) rad/s or m/s, or None (empty:
            unknown, as the message definition allows). ``effort`` stays empty.
        header: a ``std_msgs/Header`` of either world to copy.
    """
    names = [str(n) for n in joint_names]
    q = np.asarray(positions, dtype=np.float64).reshape(-1)
    if q.shape[0] != len(names):
        raise ValueError(f"{len(names)} joint names but {q.shape[0]} positions")
    v = np.zeros(0) if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(-1)
    if v.size and v.shape[0] != len(names):
        raise ValueError(f"{len(names)} joint names but {v.shape[0]} velocities")
    return factory.new("sensor_msgs/msg/JointState", header=make_header(factory, header), name=names,
                       position=float64_sequence(factory, q), velocity=float64_sequence(factory, v),
                       effort=float64_sequence(factory, np.zeros(0)))


def joint_positions(msg: Any, joint_names: Sequence[str], *, known: Sequence[str] | None = None) -> np.ndarray:
    """Positions (J,) float64 of ``joint_names`` from a ``sensor_msgs/JointState`` (either world).

    Args:
        joint_names: the joints wanted, in the order wanted (radians / metres).
        known: every joint name the message may carry (e.g. all joints of the URDF, fixed and mimic ones
            included); None: any extra name is allowed.

    Raises:
        ValueError: ``name`` and ``position`` differ in length, a name repeats, a name is not in ``known``, a
            wanted joint is missing, or a wanted position is NaN/inf. The text names the joints.
    """
    names = [str(n) for n in msg.name]
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    if len(names) != pos.shape[0]:
        raise ValueError(f"JointState has {len(names)} names but {pos.shape[0]} positions")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"JointState names repeat: {dup}")
    if known is not None:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"JointState has unknown joint name(s) {unknown}; the robot's joints are {list(known)}")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ValueError(f"JointState lacks joint(s) {missing}; it has {names}")
    q = pos[[index[n] for n in joint_names]]
    bad = [n for n, v in zip(joint_names, q) if not np.isfinite(v)]
    if bad:
        raise ValueError(f"JointState positions of {bad} are not finite: {q.tolist()}")
    return q


def duration_msg(seconds: float, factory: MessageFactory) -> Any:
    """``builtin_interfaces/Duration`` of non-negative ``seconds`` (rounded to nanoseconds)."""
    total = int(round(float(seconds) * 1e9))
    if not np.isfinite(seconds) or total < 0:
        raise ValueError(f"duration must be finite and >= 0 s, got {seconds!r}")
    return factory.new("builtin_interfaces/msg/Duration", sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def duration_to_seconds(duration: Any) -> float:
    """``builtin_interfaces/Duration`` of either world -> float seconds."""
    return float(duration.sec) + float(duration.nanosec) * 1e-9


def joint_trajectory_msg(joint_names: Sequence[str], positions: Any, times_from_start: Any,
                         factory: MessageFactory, *, header: Any = None) -> Any:
    """A ``trajectory_msgs/JointTrajectory`` of ``factory``'s world.

    Args:
        positions: (N, J) waypoints, radians/metres, columns in ``joint_names`` order.
        times_from_start: (N,) seconds after ``header.stamp``, strictly increasing (what controllers such as
            joint_trajectory_controller require) and >= 0.
    Velocities/accelerations are left empty: the controller interpolates.
    """
    names = [str(n) for n in joint_names]
    q = np.asarray(positions, dtype=np.float64)
    t = np.asarray(times_from_start, dtype=np.float64).reshape(-1)
    if q.ndim != 2 or q.shape[1] != len(names):
        raise ValueError(f"positions must be (N, {len(names)}) for joints {names}, got shape {q.shape}")
    if t.shape[0] != q.shape[0]:
        raise ValueError(f"{q.shape[0]} waypoints but {t.shape[0]} times")
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise ValueError("trajectory positions and times must be finite")
    if t.size and (t[0] < 0 or np.any(np.diff(t) <= 0)):
        raise ValueError(f"times_from_start must be >= 0 and strictly increasing, got {t.tolist()}")
    points = [factory.new("trajectory_msgs/msg/JointTrajectoryPoint", positions=float64_sequence(factory, row),
                          time_from_start=duration_msg(float(ti), factory)) for row, ti in zip(q, t)]
    return factory.new("trajectory_msgs/msg/JointTrajectory", header=make_header(factory, header),
                       joint_names=names, points=points)


def joint_trajectory_arrays(msg: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(joint_names, positions (N, J), times_from_start (N,) s)`` of a ``JointTrajectory`` (either world)."""
    names = [str(n) for n in msg.joint_names]
    q = np.array([np.asarray(p.positions, dtype=np.float64) for p in msg.points]).reshape(len(msg.points), len(names))
    t = np.array([duration_to_seconds(p.time_from_start) for p in msg.points], dtype=np.float64)
    return names, q, t
