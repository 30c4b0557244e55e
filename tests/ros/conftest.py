"""Fixtures of the ROS tests: a private ROS domain per test, an rclpy context/node/executor in this process,
and child processes that are always stopped. Tests that need rclpy skip (with the import error) without it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ros_harness, for the tests and the child scripts

from ros_harness import Child, domain_id_for, python_child  # noqa: E402


def require_rclpy():
    """The rclpy module, or skip the test saying why it cannot be imported."""
    try:
        return importlib.import_module("rclpy")
    except Exception as exc:  # noqa: BLE001 - ImportError, or a C extension that fails to load
        pytest.skip(f"rclpy cannot be imported here ({type(exc).__name__}: {exc}); "
                    "install the ros extra (pip install '.[ros]') or source a ROS 2 install")


@pytest.fixture
def domain_id(request, monkeypatch) -> int:
    """A ROS domain of this test only; this process discovers peers on this host only."""
    did = domain_id_for(request.node.nodeid)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(did))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return did


@pytest.fixture
def ros(domain_id):
    """``(rclpy, context)``: an rclpy context on the test's domain, without signal handlers (pytest keeps
    SIGINT), shut down after the test."""
    rclpy = require_rclpy()
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield rclpy, context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def executor(ros):
    """A single-threaded executor on the test's context; its nodes are destroyed after the test."""
    rclpy, context = ros
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=context)
    yield ex
    for node in list(ex.get_nodes()):
        ex.remove_node(node)
        node.destroy_node()
    ex.shutdown(timeout_sec=1.0)


@pytest.fixture
def children(domain_id, tmp_path):
    """``spawn(name, args) -> Child``: python child processes in the test's domain, all stopped afterwards."""
    started: list[Child] = []

    def spawn(name: str, args: list[str]) -> Child:
        child = python_child(name, args, domain_id, tmp_path)
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.stop()
