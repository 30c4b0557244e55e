"""Bad clouds do not take the completion node down: each is counted as a rejection in /diagnostics (with the
reason), and the next good cloud still becomes a mesh with its stamp. Neither does the death of its stage
process (a segfault in native code looks the same): it is restarted."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ros_harness import (REPO, TEST_FRAME, diagnostic_values, make_cloud, node_diagnostics, plane_and_box, spin_until,
                         stamp_ns_of, wait_pid_gone)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE_ARGS = ["-m", "gen3d_ros.ros.completion_node", "--ros-args",
             "--params-file", str(REPO / "config" / "completion_node.yaml"), "-p", "poisson_depth:=6"]


def test_bad_clouds_are_rejected_and_counted_and_the_node_keeps_meshing(ros, executor, children):
    rclpy, context = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh

    node_proc = children("completion_node", NODE_ARGS)
    node = rclpy.create_node("bad_input_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    meshes: list = []
    node.create_subscription(CompletedMesh, "/completion_node/mesh", meshes.append, reliable)
    diag = node_diagnostics(node, "/completion_node", reliable)
    alive = [node_proc]
    assert spin_until(executor, lambda: diag and pub.get_subscription_count() > 0, 30.0, alive=alive), \
        node_proc.output()

    def latest() -> dict[str, str]:
        return diagnostic_values(diag[-1])

    good = plane_and_box(seed=3)
    bad_clouds = {
        "empty cloud": make_cloud(np.zeros((0, 3), np.float32), stamp_ns=1_000),
        "all-NaN cloud": make_cloud(np.full((800, 3), np.nan, np.float32), stamp_ns=2_000),
        "point_step smaller than its fields": make_cloud(good, stamp_ns=3_000, field_step=8),
    }
    for what, cloud in bad_clouds.items():
        before = int(latest()["rejected"])
        deadline = time.monotonic() + 15.0
        while int(latest()["rejected"]) <= before:  # best effort input: resend until it is counted
            assert time.monotonic() < deadline, f"{what} was not counted as rejected: {latest()}"
            pub.publish(cloud)
            spin_until(executor, lambda: int(latest()["rejected"]) > before, 1.5, alive=alive)
        values = latest()
        assert values["last_error"].startswith("rejected:"), (what, values)
        assert int(values["failed"]) == 0, (what, values)
        assert diag[-1].level == b"\x01", (what, diag[-1].message)  # WARN while rejections are recent
    assert "point_step" in latest()["last_error"]

    def mesh_for(stamp: int, what: str):
        cloud = make_cloud(good, stamp_ns=stamp)
        deadline = time.monotonic() + 20.0
        while not any(stamp_ns_of(m) == stamp for m in meshes):
            assert time.monotonic() < deadline, f"no mesh {what}: {latest()}\n{node_proc.output()}"
            pub.publish(cloud)
            spin_until(executor, lambda: any(stamp_ns_of(m) == stamp for m in meshes), 2.0, alive=alive)
        return next(m for m in meshes if stamp_ns_of(m) == stamp)

    mesh = mesh_for(1_700_000_123_456_789_000, "after the bad clouds")
    assert mesh.header.frame_id == TEST_FRAME and len(mesh.mesh.triangles) > 0
    assert spin_until(executor, lambda: int(latest()["processed"]) >= 1, 5.0, alive=alive)
    assert int(latest()["rejected"]) >= 3 and int(latest()["failed"]) == 0

    # The stage process dies (SIGKILL, as a segfault would): the node restarts it and meshes the next cloud.
    stage_pid = int(latest()["stage_pid"])
    os.kill(stage_pid, signal.SIGKILL)
    assert wait_pid_gone(stage_pid)
    mesh = mesh_for(1_700_000_124_000_000_000, "after the stage process died")
    assert len(mesh.mesh.triangles) > 0
    assert spin_until(executor, lambda: float(latest().get("stage_process_restarts", "0")) >= 1, 5.0, alive=alive)
    assert int(latest()["stage_pid"]) != stage_pid
    assert node_proc.alive()


def test_live_malformed_set_is_counted_while_the_node_keeps_serving(ros, executor, children):
    """45 malformed PointCloud2 messages of 28 kinds (tests/ros/malformed_clouds.py: wrong sizes, bad fields,
    NaN/inf/far points, huge width with tiny data, big-endian flag, random point bytes, raw CDR garbage with
    impossible lengths) in groups of 5, each group followed by a valid cloud: every valid cloud is meshed, the
    diagnostics and parameter services keep answering, and every message is accounted for."""
    rclpy, context = ros
    from rcl_interfaces.srv import GetParameters
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh
    from malformed_clouds import malformed_clouds

    node_proc = children("completion_node", NODE_ARGS)  # worker: process, input_qos: auto (the defaults)
    node = rclpy.create_node("malformed_set_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    meshes: list = []
    node.create_subscription(CompletedMesh, "/completion_node/mesh", meshes.append, reliable)
    diag = node_diagnostics(node, "/completion_node", reliable)
    client = node.create_client(GetParameters, "/completion_node/get_parameters")
    alive = [node_proc]
    assert spin_until(executor, lambda: diag and pub.get_subscription_count() > 0 and client.service_is_ready(),
                      30.0, alive=alive), node_proc.output()

    cases = malformed_clouds(seed=7)
    assert len(cases) >= 40
    good = plane_and_box(seed=4)
    sent, valid_stamps = 0, []
    for start in range(0, len(cases), 5):
        for case in cases[start:start + 5]:
            pub.publish(case.payload)
            sent += 1
            spin_until(executor, lambda: False, 0.1, alive=alive)  # the stage rejects in milliseconds
        stamp = 1_800_000_000_000_000_000 + start
        pub.publish(make_cloud(good, stamp_ns=stamp))
        sent += 1
        valid_stamps.append(stamp)
        assert spin_until(executor, lambda: any(stamp_ns_of(m) == stamp for m in meshes), 60.0, alive=alive), (
            f"no mesh for the valid cloud after {[c.name for c in cases[start:start + 5]]}: "
            f"{diagnostic_values(diag[-1])}\n{node_proc.output()}")
        reports = len(diag)
        future = client.call_async(GetParameters.Request(names=["method"]))
        assert spin_until(executor, future.done, 10.0, alive=alive), "parameter service did not answer"
        assert future.result().values[0].string_value == "classical-poisson"
        assert spin_until(executor, lambda: len(diag) > reports, 5.0, alive=alive), "diagnostics stopped"

    def settled() -> bool:  # every received message is accounted for and the worker is idle
        v = diagnostic_values(diag[-1])
        return v["pending"] == "0" and int(v["received"]) == sum(
            int(v[k]) for k in ("processed", "rejected", "failed", "dropped"))

    assert spin_until(executor, lambda: settled() and int(diagnostic_values(diag[-1])["processed"])
                      >= len(valid_stamps), 30.0, alive=alive), diagnostic_values(diag[-1])
    values = diagnostic_values(diag[-1])
    received, dropped = int(values["received"]), int(values["dropped"])
    assert received >= 0.95 * sent, (sent, values)  # reliable delivery (a message may be replaced in history)
    must_reject = sum(c.must_reject for c in cases)
    # every message that must be rejected was, unless the latest-only queue replaced it before the stage saw it
    assert int(values["rejected"]) >= must_reject - dropped - (sent - received), values
    assert int(values["processed"]) >= len(valid_stamps), values
    assert node_proc.alive()
