"""Coarse result first: the completion stage's early output (hGCA's coarse voxels) crosses the stage process the
moment it exists and is published before the mesh of the same sweep; a failure after it still counts the frame
as failed, and the pipe stays in step. On the hGCA test double (``completion_fakes``: coarse at once, mesh
``delay_s`` later); ``test_hgca_node.py`` checks the same order with the real hierarchy."""

from __future__ import annotations

import dataclasses
import time

import pytest

from completion_fakes import FailingFakeHGCAStage, FakeHGCAStage
from ros_harness import TEST_FRAME, make_cloud, plane_and_box, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros]

FINAL = ["mesh_marker", "completed_mesh", "completed_voxels"]
T0_NS = 1_700_000_000_000_000_000


def cloud_cdr(stamp_ns: int) -> bytes:
    from gen3d_ros.io.messages import make_header, rosbags_factory
    from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2

    factory = rosbags_factory()
    msg = arrays_to_pointcloud2(plane_and_box(), factory, header=make_header(
        factory, frame_id=TEST_FRAME, stamp=factory.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)))
    return bytes(factory.typestore.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))


def stamp_of(name: str, cdr: bytes) -> int:
    from gen3d_ros.io.messages import stamp_to_nanoseconds
    from gen3d_ros.io.typestore import get_gen3d_typestore
    from gen3d_ros.pipeline.completion import CompletionStage

    typestore = get_gen3d_typestore()
    return stamp_to_nanoseconds(typestore.deserialize_cdr(cdr, CompletionStage.outputs[name]).header.stamp)


@pytest.fixture
def stage_process():
    """``start(stage_cls) -> (StageProcess, StageStats)`` with a built stage; stopped after the test."""
    from gen3d_ros.completion.processor import CompletionConfig
    from gen3d_ros.pipeline.base import StageStats
    from gen3d_ros.ros.stage_process import StageProcess

    started = []

    def start(stage_cls):
        stats = StageStats()
        proc = StageProcess(stage_cls, CompletionConfig(marker_max_triangles=2000), stats, name="coarse_first_test")
        started.append(proc)
        proc.start()
        proc.ensure_ready()
        return proc, stats

    yield start
    for proc in started:
        proc.stop()


def test_coarse_voxels_cross_the_stage_process_before_the_mesh_of_the_same_sweep(stage_process) -> None:
    proc, stats = stage_process(FakeHGCAStage)
    for k in range(2):  # nothing of one sweep arrives with the next
        stamp = T0_NS + k * 100_000_000
        got: list[tuple[str, float, bytes]] = []
        start = time.monotonic()
        finals = proc.process("cloud", cloud_cdr(stamp),
                              on_output=lambda name, cdr: got.append((name, time.monotonic() - start, cdr)))
        done = time.monotonic() - start
        assert [name for name, _, _ in got] == ["coarse_voxels"]
        # handed over while the child still worked on the mesh (its "fine stage" sleeps delay_s)
        assert done - got[0][1] >= 0.9 * FakeHGCAStage.delay_s, (got[0][1], done)
        assert [name for name, _ in finals] == FINAL
        coarse_name, _, coarse_cdr = got[0]
        assert {stamp_of(name, cdr) for name, cdr in [*finals, (coarse_name, coarse_cdr)]} == {stamp}
    assert (stats.processed, stats.failed, stats.rejected) == (2, 0, 0)
    assert 0.0 < stats.extra["coarse_output_ms"] < stats.last_latency_ms - 1000.0 * 0.9 * FakeHGCAStage.delay_s


def test_without_a_callback_the_coarse_voxels_come_first_in_the_returned_outputs(stage_process) -> None:
    proc, _ = stage_process(FakeHGCAStage)
    outputs = proc.process("cloud", cloud_cdr(T0_NS))
    assert [name for name, _ in outputs] == ["coarse_voxels", *FINAL]


def test_a_failure_after_the_coarse_output_is_counted_and_the_pipe_stays_in_step(stage_process) -> None:
    proc, stats = stage_process(FailingFakeHGCAStage)
    for k in range(2):
        got: list[str] = []
        assert proc.process("cloud", cloud_cdr(T0_NS + k), on_output=lambda name, cdr: got.append(name)) == []
        assert got == ["coarse_voxels"]
        assert (stats.processed, stats.failed) == (0, k + 1)
        assert "the fine stage failed" in stats.last_error


def test_a_callback_error_is_raised_after_the_frame_is_read(stage_process) -> None:
    proc, stats = stage_process(FakeHGCAStage)

    def broken(name: str, cdr: bytes) -> None:
        raise RuntimeError(f"cannot publish {name}")

    with pytest.raises(RuntimeError, match="cannot publish coarse_voxels"):
        proc.process("cloud", cloud_cdr(T0_NS), on_output=broken)
    assert stats.processed == 1  # the frame itself was done
    outputs = proc.process("cloud", cloud_cdr(T0_NS + 1))  # the next frame's replies are its own
    assert [name for name, _ in outputs] == ["coarse_voxels", *FINAL]
    assert {stamp_of(name, cdr) for name, cdr in outputs} == {T0_NS + 1}


def test_the_node_publishes_coarse_voxels_before_the_mesh_of_the_same_stamp(ros, executor) -> None:
    rclpy, context = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import Marker

    from gen3d_ros.msg import CompletedMesh
    from gen3d_ros.pipeline.registry import node_entry
    from gen3d_ros.ros.stage_node import StageNode

    entry = dataclasses.replace(node_entry("completion_node"), stage="completion_fakes:FakeHGCAStage")
    host = StageNode(entry, context=context, cli_args=["--ros-args", "-p", "worker:=process",
                                                       "-p", "marker_max_triangles:=2000"])
    executor.add_node(host)
    node = rclpy.create_node("coarse_first_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    arrivals: list[tuple[str, int, float]] = []  # (output, stamp, monotonic arrival)
    for name, msgtype, topic in [("coarse_voxels", PointCloud2, "/completion_node/coarse_voxels"),
                                 ("mesh_marker", Marker, "/completion_node/marker"),
                                 ("completed_mesh", CompletedMesh, "/completion_node/mesh")]:
        node.create_subscription(msgtype, topic, lambda msg, name=name: arrivals.append(
            (name, stamp_ns_of(msg), time.monotonic())), reliable)
    pub = node.create_publisher(PointCloud2, "/points", reliable)
    assert spin_until(executor, lambda: host._stage_process.has_stage and pub.get_subscription_count() > 0, 60.0)

    stamps = [T0_NS, T0_NS + 100_000_000]
    for stamp in stamps:  # one at a time: the latest-only queue would drop a cloud sent while one is in work
        pub.publish(make_cloud(plane_and_box(), stamp_ns=stamp))
        assert spin_until(executor, lambda: {(n, s) for n, s, _ in arrivals} >= {
            ("coarse_voxels", stamp), ("mesh_marker", stamp), ("completed_mesh", stamp)}, 60.0), (
            arrivals, host.diagnostic_status().message)
    for stamp in stamps:
        first = {name: t for name, s, t in reversed(arrivals) if s == stamp}  # earliest arrival of each output
        # the coarse voxels arrive while the child still makes the mesh (delay_s), not just before it
        assert first["mesh_marker"] - first["coarse_voxels"] >= 0.8 * FakeHGCAStage.delay_s, first
        assert first["completed_mesh"] - first["coarse_voxels"] >= 0.8 * FakeHGCAStage.delay_s, first
    assert [s for n, s, _ in arrivals if n == "coarse_voxels"] == stamps
    assert host.stats.processed == 2 and host.stats.failed == 0
