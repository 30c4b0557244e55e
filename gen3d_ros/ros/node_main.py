"""How a stage node process runs: the ``main`` of ``stage_node NODE --ros-args …`` (the executable the launch files
start for every node of :data:`gen3d_ros.pipeline.registry.STAGES`; also ``python -m gen3d_ros.ros.node_main NODE``
and the per-node ``python -m gen3d_ros.ros.<node>`` entry points), the Python-logging to rclpy bridge, and spinning
nodes until SIGINT/SIGTERM with a clean exit code (shared with ``gen3d run``).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

import rclpy
import rclpy.logging
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from gen3d_ros.pipeline.registry import node_entry, node_names
from gen3d_ros.ros.logs import ThrottleFilter
from gen3d_ros.ros.hosts import bring_up, create_node


class _RclpyLogBridge(logging.Handler):
    """Forwards Python ``logging`` records of ``gen3d_ros.*`` (stages, processors) to rclpy logging, throttled
    to one per second per call site (:class:`gen3d_ros.ros.logs.ThrottleFilter`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(ThrottleFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            logger = rclpy.logging.get_logger(record.name)
            if record.levelno >= logging.ERROR:
                logger.error(text)
            elif record.levelno >= logging.WARNING:
                logger.warning(text)
            else:
                logger.info(text)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


_bridge_lock = threading.Lock()


def install_log_bridge() -> None:
    """Route the ``gen3d_ros`` Python loggers to rclpy logging (once per process)."""
    with _bridge_lock:
        logger = logging.getLogger("gen3d_ros")
        if not any(isinstance(h, _RclpyLogBridge) for h in logger.handlers):
            logger.addHandler(_RclpyLogBridge())
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)


def spin_nodes(nodes: Iterable[Node], *, context: Any = None) -> int:
    """Spin ``nodes`` until shutdown (SIGINT, SIGTERM, or the context shut down); destroy them; 0.

    One node: a single-threaded executor; several, or a node with ``needs_threads`` (an action server whose goal
    runs in a callback): a multi-threaded one (heavy work runs on the nodes' own workers either way).
    """
    nodes = list(nodes)
    threads = len(nodes) > 1 or any(getattr(node, "needs_threads", False) for node in nodes)
    executor = MultiThreadedExecutor(context=context) if threads else SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            if node.context.ok():  # after a signal the context is already down: rosout would complain
                node.get_logger().info("shutting down")
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=context)
    return 0


#: ``stage_node NODE --lifecycle MODE``: ``false`` a plain node (default); ``true`` a managed node that brings
#: itself to active; ``managed`` a managed node left unconfigured for a lifecycle manager
LIFECYCLE_MODES = ("false", "true", "managed")


def run_node(node: str, argv: Sequence[str] | None = None, *, lifecycle: str = "false") -> int:
    """``main`` of one stage node of the registry: ``rclpy.init`` with ``argv`` (``--ros-args …``), spin, clean
    exit code. ``lifecycle``: one of :data:`LIFECYCLE_MODES`.

    Returns 0 after SIGINT/SIGTERM, 2 when the node is unknown or its parameters are invalid (the reason is
    logged), or a managed node's configure / activate failed (``lifecycle: true``).
    """
    try:
        node_entry(node)
    except KeyError as exc:
        print(f"stage_node: {exc.args[0]}", file=sys.stderr)
        return 2
    args = list(sys.argv if argv is None else argv)
    try:
        rclpy.init(args=args)
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed --ros-args / params file
        print(f"{node}: cannot initialise rclpy: {exc}", file=sys.stderr)
        return 2
    install_log_bridge()
    try:
        stage_node = create_node(node, lifecycle=lifecycle != "false")
        failed = bring_up(stage_node) if lifecycle == "true" else ""
    except (ValueError, TypeError, ParameterException) as exc:
        rclpy.logging.get_logger(node).fatal(f"invalid parameters: {exc}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    if failed:
        rclpy.logging.get_logger(node).fatal(failed)
        stage_node.destroy_node()
        rclpy.try_shutdown()
        return 2
    return spin_nodes([stage_node])


def main(argv: Sequence[str] | None = None) -> int:
    """``stage_node NODE [--lifecycle false|true|managed] [--ros-args …]`` (``python -m gen3d_ros.ros.node_main
    NODE …``): run the registry's node ``NODE``; the launch files start every node this way."""
    args = list(sys.argv if argv is None else argv)
    usage = (f"usage: {Path(args[0]).name if args else 'stage_node'} NODE [--lifecycle {'|'.join(LIFECYCLE_MODES)}] "
             f"[--ros-args ...]; NODE: one of {', '.join(node_names())}")
    if len(args) < 2 or args[1].startswith("-"):
        print(usage, file=sys.stderr)
        return 2
    rest, lifecycle = args[2:], "false"
    if rest[:1] == ["--lifecycle"]:
        if len(rest) < 2 or rest[1] not in LIFECYCLE_MODES:
            print(usage, file=sys.stderr)
            return 2
        lifecycle, rest = rest[1], rest[2:]
    return run_node(args[1], [args[0], *rest], lifecycle=lifecycle)


if __name__ == "__main__":
    sys.exit(main())
