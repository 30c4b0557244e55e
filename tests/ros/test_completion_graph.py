"""Three processes over real DDS: a cloud publisher (10 Hz), the completion node started the way a user starts
it (``python -m gen3d_ros.ros.completion_node --ros-args --params-file config/completion_node.yaml``), and
this test, which subscribes to the outputs and /diagnostics and talks to the node's parameter service."""

from __future__ import annotations

import signal

import pytest

from ros_harness import (FRAME_PERIOD_NS, PUBLISHER, REPO, TEST_FRAME, diagnostic_values, spin_until, stamp_ns_of,
                         wait_pid_gone)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

T0_NS = 1_700_000_000_123_000_000
N_FRAMES = 600
NODE_ARGS = ["-m", "gen3d_ros.ros.completion_node", "--ros-args",
             "--params-file", str(REPO / "config" / "completion_node.yaml"),
             "-p", "poisson_depth:=6"]  # ~0.4 s a cloud on these 2-core machines


def set_parameters(rclpy, node, executor, node_name: str, params: list, timeout: float = 10.0):
    """Call ``/<node_name>/set_parameters`` (what ``ros2 param set`` does); the list of results."""
    from rcl_interfaces.srv import SetParameters

    client = node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert spin_until(executor, client.service_is_ready, timeout), "set_parameters service not found"
    future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in params]))
    assert spin_until(executor, future.done, timeout), "set_parameters did not answer"
    node.destroy_client(client)
    return future.result().results


def test_completion_node_meshes_published_clouds_keeping_stamp_and_frame(ros, executor, children):
    rclpy, context = ros
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import Marker

    from gen3d_ros.msg import CompletedMesh

    node_proc = children("completion_node", NODE_ARGS)
    publisher = children("cloud_publisher", [str(PUBLISHER), "cloud", "--topic", "/points",
                                             "--rate", "10", "--count", str(N_FRAMES), "--t0-ns", str(T0_NS)])
    published = {T0_NS + i * FRAME_PERIOD_NS for i in range(N_FRAMES)}

    node = rclpy.create_node("completion_graph_test", context=context)
    executor.add_node(node)
    got: dict[str, list] = {"marker": [], "mesh": [], "voxels": [], "diag": []}
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    node.create_subscription(Marker, "/completion_node/marker", got["marker"].append, reliable)
    node.create_subscription(CompletedMesh, "/completion_node/mesh", got["mesh"].append, reliable)
    node.create_subscription(PointCloud2, "/completion_node/voxels", got["voxels"].append, reliable)

    def on_diagnostics(array) -> None:
        got["diag"] += [s for s in array.status if s.name.startswith("/completion_node")]

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)

    def enough() -> bool:
        return (len(got["marker"]) >= 2 and len(got["mesh"]) >= 2 and len(got["voxels"]) >= 1
                and any(diagnostic_values(s).get("processed", "0") != "0" for s in got["diag"]))

    alive = [node_proc, publisher]
    assert spin_until(executor, enough, 45.0, alive=alive), (
        f"outputs missing: { {k: len(v) for k, v in got.items()} }\n{node_proc.output()}\n{publisher.output()}")

    for marker in got["marker"]:
        assert stamp_ns_of(marker) in published
        assert marker.header.frame_id == TEST_FRAME
        assert marker.type == Marker.TRIANGLE_LIST
        assert len(marker.points) > 0 and len(marker.points) % 3 == 0
    for msg in got["mesh"]:
        assert stamp_ns_of(msg) in published
        assert msg.header.frame_id == TEST_FRAME
        assert len(msg.mesh.triangles) > 0 and len(msg.mesh.vertices) > 0
        assert max(max(t.vertex_indices) for t in msg.mesh.triangles) < len(msg.mesh.vertices)
        assert msg.voxel_size == pytest.approx(0.2)
        assert msg.model_id == "classical-poisson"
        assert msg.input_points > 1000
    assert {stamp_ns_of(m) for m in got["mesh"]} & {stamp_ns_of(m) for m in got["marker"]}
    for voxels in got["voxels"]:
        assert stamp_ns_of(voxels) in published and voxels.header.frame_id == TEST_FRAME and voxels.width > 0

    status = got["diag"][-1]
    values = diagnostic_values(status)
    assert status.level == b"\x00", (status.message, values)
    assert int(values["received"]) >= int(values["processed"]) >= 1
    assert int(values["rejected"]) == 0 and int(values["failed"]) == 0
    assert float(values["last_latency_ms"]) > 0.0

    # Runtime reconfiguration through the parameter service, as `ros2 param set` does it.
    results = set_parameters(rclpy, node, executor, "completion_node", [Parameter("z_min", value=30.0)])
    assert not results[0].successful and "z_min" in results[0].reason
    results = set_parameters(rclpy, node, executor, "completion_node",
                             [Parameter("cloud_topic", value="/elsewhere")])
    assert not results[0].successful and "read-only" in results[0].reason
    results = set_parameters(rclpy, node, executor, "completion_node", [Parameter("voxel_size", value=0.3)])
    assert results[0].successful, results[0].reason
    got["mesh"].clear()
    assert spin_until(executor, lambda: any(m.voxel_size == pytest.approx(0.3) for m in got["mesh"]), 20.0,
                      alive=alive), f"no mesh at the new voxel size\n{node_proc.output()}"

    # Clean shutdown: Ctrl-C (SIGINT to the process group: node and its stage process), SIGTERM to the
    # publisher; no traceback, exit code 0, no stage process left behind.
    assert values["worker"] == "process"
    stage_pid = int(values["stage_pid"])
    assert node_proc.stop(signal.SIGINT, group=True) == 0, node_proc.output()
    assert "Traceback" not in node_proc.stderr(), node_proc.output()
    assert wait_pid_gone(stage_pid), "the stage process outlived its node"
    assert publisher.stop(signal.SIGTERM) == 0, publisher.output()
    assert "Traceback" not in publisher.stderr(), publisher.output()
