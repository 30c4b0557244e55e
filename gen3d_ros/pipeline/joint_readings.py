"""Encoder readings (``sensor_msgs/JointState``) kept per joint, looked up at an image's stamp. No rclpy.

    readings = JointReadings(["joint1", "joint2"], tolerance_s=0.1)
    readings.add(joint_state_msg)                  # any order, extra joints ignored, partial messages merged
    q, why = readings.at(image_stamp_ns)           # q [J] (radians / metres) or None and the reason

A driver may publish the arm's joints and the gripper's in separate messages (two ``joint_state_broadcaster`` s
merged on ``/joint_states``), so each joint keeps its own short history and a reading of the whole robot is put
together at the image's stamp: for every joint the value whose stamp is nearest, and only when all of them lie
within ``tolerance_s`` of the image (else the reading is stale and the caller estimates the joints itself).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import numpy as np

from gen3d_ros.io.messages import stamp_to_nanoseconds


class JointReadings:
    """Latest ``history`` readings of each of ``joint_names`` (the URDF's actuated joints, the order of
    :meth:`at`'s vector), each with its message's ``header.stamp`` in nanoseconds."""

    def __init__(self, joint_names: Sequence[str], tolerance_s: float, history: int = 64) -> None:
        if tolerance_s < 0 or not np.isfinite(tolerance_s):
            raise ValueError(f"tolerance_s must be finite and >= 0, got {tolerance_s}")
        self.joint_names = [str(n) for n in joint_names]
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self._values: dict[str, deque[tuple[int, float]]] = {n: deque(maxlen=history) for n in self.joint_names}
        self.ignored_names: set[str] = set()

    def add(self, msg: Any) -> int:
        """Keep the robot's joints of a ``JointState`` (either message world); names the URDF lacks are ignored
        (remembered in :attr:`ignored_names`), a non-finite position is skipped. Returns how many of the robot's
        joints it carried. ValueError (the reason) for a message that cannot be read: ``name`` and ``position``
        of different lengths, a repeated name, a zero stamp, or none of the robot's joints."""
        names = [str(n) for n in msg.name]
        pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
        if len(names) != pos.shape[0]:
            raise ValueError(f"JointState has {len(names)} names but {pos.shape[0]} positions")
        if len(set(names)) != len(names):
            raise ValueError(f"JointState names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        stamp = stamp_to_nanoseconds(msg.header.stamp)
        if stamp <= 0:
            raise ValueError("JointState has a zero header.stamp: it cannot be matched to an image")
        used = 0
        for name, value in zip(names, pos):
            slot = self._values.get(name)
            if slot is None:
                self.ignored_names.add(name)
            elif np.isfinite(value):
                slot.append((stamp, float(value)))
                used += 1
        if used == 0:
            raise ValueError(f"JointState carries none of the robot's joints {self.joint_names} (it has {names}, "
                             "or only non-finite positions)")
        return used

    def at(self, stamp_ns: int) -> tuple[np.ndarray | None, str]:
        """``(q [J] float64, "")``: each joint's reading nearest in stamp to ``stamp_ns``, when every one is within
        the tolerance; else ``(None, reason)`` (no reading of some joint yet, or the nearest is too far)."""
        q = np.empty(len(self.joint_names))
        worst, worst_name = 0, ""
        missing = [n for n in self.joint_names if not self._values[n]]
        if missing:
            return None, f"no JointState reading of joint(s) {missing} yet"
        for i, name in enumerate(self.joint_names):
            stamps = np.fromiter((s for s, _ in self._values[name]), dtype=np.int64)
            k = int(np.argmin(np.abs(stamps - stamp_ns)))
            q[i] = self._values[name][k][1]
            gap = abs(int(stamps[k]) - stamp_ns)
            if gap > worst:
                worst, worst_name = gap, name
        if worst > self.tolerance_ns:
            return None, (f"the nearest JointState reading of {worst_name} is {worst * 1e-9:.3f} s from the image "
                          f"(joint_state_tolerance {self.tolerance_ns * 1e-9:g} s)")
        return q, ""

    def clear(self) -> None:
        """Forget every reading (a bag restarted: stamps went backwards)."""
        for slot in self._values.values():
            slot.clear()


__all__ = ["JointReadings"]
