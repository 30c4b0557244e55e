"""``gen3d run --foxglove [PORT]``: a node that subscribes to the running gen3d nodes' topics of the types a Foxglove
live view shows (:data:`gen3d_ros.viz.foxglove_live.SUPPORTED_TYPES`: the input cloud, the completed mesh and
voxels, the robot's camera pose) and to ``/tf`` + ``/tf_static``, and serves them on a Foxglove WebSocket
(:class:`~gen3d_ros.viz.foxglove_live.FoxgloveLiveView`) under their ROS names.

Callbacks only queue the message (latest per topic); a worker thread converts and sends it (a 368k-triangle
mesh takes a while in Python), so the executor is never held up and a slow conversion drops older messages
instead of queueing them. Inputs are subscribed best effort (matching every publisher, as sensor drivers often
are), outputs reliable (large meshes), latched outputs and ``/tf_static`` also transient-local.
"""

from __future__ import annotations

from typing import Any, Iterable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from gen3d_ros.io.messages import rclpy_factory
from gen3d_ros.ros.latest_queue import LatestOnlyQueue, Pending, Worker
from gen3d_ros.viz.foxglove_live import SUPPORTED_TYPES

TF_TOPICS = {"/tf": False, "/tf_static": True}  # topic -> transient-local


def bridge_topics(nodes: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """``topic -> (msgtype, role)`` of every input and output of the stage ``nodes`` that the live view shows
    (role ``input``, ``output`` or ``latched``), plus ``/tf`` and ``/tf_static``."""
    topics: dict[str, tuple[str, str]] = {}
    for node in nodes:
        stage = node.stage_cls
        for name, topic in node.input_topics.items():
            if stage.inputs[name] in SUPPORTED_TYPES:
                topics.setdefault(topic, (stage.inputs[name], "input"))
        for name, topic in node.output_topics.items():
            if stage.outputs[name] in SUPPORTED_TYPES:
                topics[topic] = (stage.outputs[name], "latched" if name in node.entry.latched else "output")
    for topic, latched in TF_TOPICS.items():
        topics[topic] = ("tf2_msgs/msg/TFMessage", "latched" if latched else "input")
    return topics


def _qos(role: str) -> QoSProfile:
    if role == "input":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    durability = DurabilityPolicy.TRANSIENT_LOCAL if role == "latched" else DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=durability)


class FoxgloveBridge(Node):
    """Forwards ``topics`` (:func:`bridge_topics`) to ``view``; ``node_kwargs``: rclpy's (``context`` …)."""

    def __init__(self, view: Any, topics: dict[str, tuple[str, str]], *, node_name: str = "gen3d_foxglove",
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.view = view
        self.topics = dict(topics)
        self.sent = 0
        self.failed = 0
        factory = rclpy_factory()
        self._queue = LatestOnlyQueue()
        self._worker = Worker(self._queue, self._forward, name="foxglove_bridge", on_error=self._on_error)
        self._subscriptions_by_topic = {
            topic: self.create_subscription(factory.cls(msgtype), topic,
                                            lambda msg, topic=topic: self._queue.put(topic, msg), _qos(role))
            for topic, (msgtype, role) in self.topics.items()}
        self._worker.start()
        self.get_logger().info(f"Foxglove live view on {view.url} (Foxglove app: Open connection -> Foxglove "
                               f"WebSocket): {sorted(self.topics)}")

    def _forward(self, pending: Pending) -> None:
        msgtype = self.topics[pending.key][0]
        self.view.log_message(pending.key, msgtype, pending.msg)
        self.sent += 1

    def _on_error(self, exc: BaseException) -> None:
        self.failed += 1
        self.get_logger().warning(f"foxglove: could not forward a message: {type(exc).__name__}: {exc}",
                                  throttle_duration_sec=10.0)

    def destroy_node(self) -> None:
        self._worker.stop(timeout=5.0)
        self.view.close()
        super().destroy_node()
