"""TF for the nodes: ``/tf`` + ``/tf_static`` read into a buffer, looked up as 4x4 matrices.

:class:`NodeTransforms` uses the real ``tf2_ros`` (``Buffer`` + ``TransformListener``) when it is importable (a
ROS 2 install) and otherwise :class:`gen3d_ros.geometry.tf_buffer.TransformBuffer` fed by its own subscriptions:
``/tf`` (volatile, depth 100) and ``/tf_static`` (transient local, reliable: late joiners get every static
transform, as tf2's listener subscribes). The fallback interpolates (linear + slerp) and serves a stamp up to
``tolerance_s`` outside an edge's samples; tf2 interpolates the same way and does not extrapolate.

``lookup(target, source, stamp_ns, timeout_s)`` waits up to ``timeout_s`` for the transform (it may be published
after the sweep arrives) and returns ``T_target_source`` (4x4 float64, maps ``source`` points into ``target``,
metres) or raises :class:`~gen3d_ros.geometry.tf_buffer.TransformMissing` with the reason.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import numpy as np

from gen3d_ros.geometry.tf_buffer import DEFAULT_TOLERANCE_NS, TransformBuffer, TransformMissing
from gen3d_ros.io.transforms import add_tf_message, transform_to_matrix

TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
POLL_S = 0.01


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def message_header(msg: Any) -> tuple[int, str]:
    """``(stamp ns, frame_id)`` of a message whose first field is a ``std_msgs/Header``: an rclpy message, or its
    serialized CDR bytes (a raw subscription's; the header is read without deserializing the rest). ValueError
    for bytes too short to hold a header."""
    if not isinstance(msg, (bytes, bytearray, memoryview)):
        return stamp_ns(msg.header.stamp), str(msg.header.frame_id)
    data = bytes(msg)
    if len(data) < 16:
        raise ValueError(f"{len(data)} bytes cannot hold a CDR header")
    order = "<" if data[1] & 1 else ">"  # encapsulation: CDR_LE = 0x0001, CDR_BE = 0x0000
    sec, nanosec, length = struct.unpack_from(f"{order}iII", data, 4)
    if 16 + length > len(data):
        raise ValueError(f"CDR header frame_id of {length} bytes runs past the {len(data)}-byte message")
    frame = data[16:16 + length].split(b"\0", 1)[0].decode("utf-8", "replace")
    return sec * 1_000_000_000 + nanosec, frame


def tf2_available() -> bool:
    """Whether the real ``tf2_ros`` can be imported here."""
    try:
        import tf2_ros  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a C extension that fails to load
        return False
    return True


class NodeTransforms:
    """TF of ``node``: tf2_ros where importable (``prefer_tf2``), else our buffer fed from ``/tf`` and
    ``/tf_static``. ``backend`` says which: ``"tf2_ros"`` or ``"gen3d"``."""

    def __init__(self, node: Any, *, tolerance_s: float = DEFAULT_TOLERANCE_NS / 1e9, prefer_tf2: bool = True
                 ) -> None:
        self.node = node
        self._tf2: Any = None
        if prefer_tf2 and tf2_available():
            import tf2_ros

            self._tf2 = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._tf2, node)
            self.backend = "tf2_ros"
            return
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.backend = "gen3d"
        self.buffer = TransformBuffer(tolerance_ns=int(tolerance_s * 1e9))
        tf_msg = node.factory.cls("tf2_msgs/msg/TFMessage") if hasattr(node, "factory") else _tf_message_class()
        dynamic = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
        static = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subscriptions = [
            node.create_subscription(tf_msg, TF_TOPIC, lambda m: self.add(m, static=False), dynamic),
            node.create_subscription(tf_msg, TF_STATIC_TOPIC, lambda m: self.add(m, static=True), static)]

    def add(self, msg: Any, *, static: bool) -> None:
        """Put the transforms of a ``tf2_msgs/TFMessage`` into the buffer (fallback only); a malformed one is
        skipped (logged), never raised: a callback must not take the node down."""
        for reason in add_tf_message(self.buffer, msg, static=static):
            self.node.get_logger().warning(f"ignoring a TF transform {reason}", throttle_duration_sec=10.0)

    def lookup(self, target: str, source: str, stamp: int, timeout_s: float = 0.0) -> np.ndarray:
        """``T_target_source`` at ``stamp`` (ns), waiting up to ``timeout_s`` for it; TransformMissing otherwise.
        Call it from a worker thread, not from a callback of the executor that feeds the buffer."""
        if target == source:
            return np.eye(4)
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._tf2 is not None:
            return self._lookup_tf2(target, source, stamp, timeout_s)
        while True:
            try:
                return self.buffer.lookup(target, source, stamp)
            except TransformMissing:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(POLL_S)

    def _lookup_tf2(self, target: str, source: str, stamp: int, timeout_s: float) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            t = self._tf2.lookup_transform(target, source, Time(nanoseconds=stamp),
                                           timeout=Duration(nanoseconds=int(timeout_s * 1e9)))
        except Exception as exc:  # noqa: BLE001 - tf2's LookupException, ExtrapolationException, ...
            raise TransformMissing(f"{type(exc).__name__}: {exc}") from None
        return transform_to_matrix(t.transform)


def _tf_message_class() -> Any:
    from tf2_msgs.msg import TFMessage

    return TFMessage
