"""Namespaces: two completion nodes (two cars) from ONE params file, each with its parameters and its own topics;
remapping moves a topic like any ROS node's; diagnostics name the resolved topics."""

from __future__ import annotations

import pytest

from ros_harness import make_cloud, plane_and_box, spin_until, stamp_ns_of

pytestmark = [pytest.mark.ros]

T0_NS = 1_700_000_000 * 10**9

PARAMS = """\
/**/completion_node:
  ros__parameters:
    method: "classical-poisson"
    voxel_size: 0.3
    poisson_depth: 6
    worker: "thread"
/car2/completion_node:
  ros__parameters:
    voxel_size: 0.25
"""


def test_two_namespaced_completion_nodes_from_one_params_file(ros, executor, tmp_path) -> None:
    rclpy, context = ros
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh
    from gen3d_ros.ros.stage_node import create_stage_node

    params = tmp_path / "cars.yaml"
    params.write_text(PARAMS)
    car1 = create_stage_node("completion_node", context=context, cli_args=[
        "--ros-args", "-r", "__ns:=/car1", "--params-file", str(params)])
    car2 = create_stage_node("completion_node", context=context, cli_args=[
        "--ros-args", "-r", "__ns:=/car2", "--params-file", str(params), "-r", "points:=velodyne_points"])
    executor.add_node(car1)
    executor.add_node(car2)
    # the /** section reached both, the /car2 section car2 only (a bare "completion_node:" would reach neither)
    assert (car1.config.method, car1.config.voxel_size, car1.config.poisson_depth) == ("classical-poisson", 0.3, 6)
    assert (car2.config.method, car2.config.voxel_size) == ("classical-poisson", 0.25)
    assert car1.input_topics == {"cloud": "/car1/points"}
    assert car1.output_topics["completed_mesh"] == "/car1/completion_node/mesh"
    assert car1.output_topics["mesh_marker"] == "/car1/completion_node/marker"
    assert car2.input_topics == {"cloud": "/car2/velodyne_points"}  # remapped
    values = {kv.key: kv.value for kv in car2.diagnostic_status().values}
    assert values["topic.cloud"] == "/car2/velodyne_points"
    assert values["topic.completed_mesh"] == "/car2/completion_node/mesh"
    assert car2.diagnostic_status().name.startswith("/car2/completion_node")

    node = rclpy.create_node("namespace_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    meshes: dict[str, list] = {"car1": [], "car2": []}
    for car in meshes:
        node.create_subscription(CompletedMesh, f"/{car}/completion_node/mesh",
                                 lambda msg, car=car: meshes[car].append(msg), reliable)
    pub1 = node.create_publisher(PointCloud2, "/car1/points", reliable)
    pub2 = node.create_publisher(PointCloud2, "/car2/velodyne_points", reliable)
    assert spin_until(executor, lambda: pub1.get_subscription_count() and pub2.get_subscription_count(), 10.0)
    cloud = plane_and_box()
    pub1.publish(make_cloud(cloud, stamp_ns=T0_NS))
    assert spin_until(executor, lambda: meshes["car1"], 60.0), car1.diagnostic_status().message
    pub2.publish(make_cloud(cloud, stamp_ns=T0_NS + 1))
    assert spin_until(executor, lambda: meshes["car2"], 60.0), car2.diagnostic_status().message
    spin_until(executor, lambda: False, 0.3)
    # each car's mesh came from its own cloud and carries its own voxel size
    assert [stamp_ns_of(m) for m in meshes["car1"]] == [T0_NS]
    assert [stamp_ns_of(m) for m in meshes["car2"]] == [T0_NS + 1]
    assert meshes["car1"][0].voxel_size == pytest.approx(0.3) and meshes["car2"][0].voxel_size == pytest.approx(0.25)
    assert car1.stats.processed == 1 and car2.stats.processed == 1


def test_gen3d_run_puts_its_nodes_in_the_namespace_given_on_the_command_line(ros, executor, children) -> None:
    """``gen3d run --ros-args -r __ns:=/car1``: the packaged params file (``/**/completion_node``) still applies
    and the topics move under /car1."""
    import signal

    from ros_harness import REPO

    rclpy, context = ros
    runner = children("gen3d_run_ns", ["-m", "gen3d_ros.ros.runner", "--params-file",
                                       str(REPO / "config/gen3d.yaml"), "--nodes", "completion_node",
                                       "--ros-args", "-r", "__ns:=/car1"])
    from diagnostic_msgs.msg import DiagnosticArray

    node = rclpy.create_node("namespace_runner_test", context=context)
    executor.add_node(node)
    names: set[str] = set()  # /diagnostics comes once the node is fully up (stopping it earlier is another test)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda a: names.update(s.name for s in a.status), 10)

    def endpoints() -> tuple[int, int]:
        return (len(node.get_subscriptions_info_by_topic("/car1/points")),
                len(node.get_publishers_info_by_topic("/car1/completion_node/mesh")))

    assert spin_until(executor, lambda: endpoints() == (1, 1) and any(n.startswith("/car1/completion_node")
                                                                      for n in names), 60.0, alive=[runner]), \
        runner.output()
    assert not node.get_subscriptions_info_by_topic("/points")
    assert runner.stop(signal.SIGTERM) == 0, runner.output()
    assert "/car1/points" in runner.stderr()  # the log names the resolved topics
