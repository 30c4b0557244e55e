"""Lifecycle (managed) stage nodes over real rclpy: nothing is subscribed before activate, configure builds the
stage and the publishers, activate subscribes (a cloud is completed), deactivate unsubscribes (a cloud is not),
cleanup frees the stage and the publishers and a second configure keeps the parameters set meanwhile; the standard
~/change_state service drives it; a configure whose files are missing fails and leaves it unconfigured."""

from __future__ import annotations

import pytest

from conftest import require_rclpy  # noqa: F401 - the ros fixture skips without rclpy
from ros_harness import make_cloud, plane_and_box, spin_until

pytestmark = [pytest.mark.ros]


def managed_node(context, *params: str):
    from gen3d_ros.pipeline.registry import node_entry
    from gen3d_ros.ros.hosts import host_class
    from gen3d_ros.ros.lifecycle import lifecycle_class

    entry = node_entry("completion_node")
    args = ["--ros-args", "-p", "worker:=thread"]
    for p in params:
        args += ["-p", p]
    return lifecycle_class(host_class(entry))(entry, context=context, cli_args=args)


def state_of(node) -> str:
    return node._state_machine.current_state[1]


def test_transitions_subscribe_only_while_active(ros, executor):
    rclpy, context = ros
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2

    from gen3d_ros.msg import CompletedMesh
    from gen3d_ros.ros.stage_node import output_qos_profile

    node = managed_node(context, "voxel_size:=0.25")
    executor.add_node(node)
    client = rclpy.create_node("lifecycle_test_client", context=context)
    executor.add_node(client)
    assert state_of(node) == "unconfigured" and node.stage is None
    cloud_topic = node.resolve_topic_name(node.get_parameter("cloud_topic").value)
    mesh_topic = node.resolve_topic_name(node.get_parameter("completed_mesh_topic").value)
    meshes: list = []
    client.create_subscription(CompletedMesh, mesh_topic, meshes.append, output_qos_profile(False))
    pub = client.create_publisher(PointCloud2, cloud_topic, output_qos_profile(False))
    spin_until(executor, lambda: False, 0.5)
    assert pub.get_subscription_count() == 0 and client.count_publishers(mesh_topic) == 0

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert state_of(node) == "inactive" and node.stage is not None
    assert spin_until(executor, lambda: client.count_publishers(mesh_topic) == 1, 10.0)
    spin_until(executor, lambda: False, 0.5)
    assert pub.get_subscription_count() == 0  # configured, not active: no input yet

    change = client.create_client(ChangeState, f"{node.get_fully_qualified_name()}/change_state")
    assert change.wait_for_service(timeout_sec=10.0)
    future = change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE)))
    assert spin_until(executor, future.done, 10.0) and future.result().success
    assert state_of(node) == "active"
    assert spin_until(executor, lambda: pub.get_subscription_count() == 1, 10.0)
    pub.publish(make_cloud(plane_and_box(), stamp_ns=10**9))
    assert spin_until(executor, lambda: len(meshes) == 1, 60.0), node.stats.as_dict()

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert spin_until(executor, lambda: pub.get_subscription_count() == 0, 10.0)
    pub.publish(make_cloud(plane_and_box(1), stamp_ns=2 * 10**9))
    spin_until(executor, lambda: False, 2.0)
    assert len(meshes) == 1 and node.received == 1  # paused: the second cloud never reached the node

    node.set_parameters([Parameter("voxel_size", value=0.3)])
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert state_of(node) == "unconfigured" and node.stage is None
    assert spin_until(executor, lambda: client.count_publishers(mesh_topic) == 0, 10.0)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # again, with the value set meanwhile
    assert node.config.voxel_size == 0.3 and node.stage.config.voxel_size == 0.3
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    pub.publish(make_cloud(plane_and_box(2), stamp_ns=3 * 10**9))
    assert spin_until(executor, lambda: len(meshes) == 2, 60.0), node.stats.as_dict()
    assert abs(meshes[-1].voxel_size - 0.3) < 1e-6


def test_configure_with_missing_files_fails_and_stays_unconfigured(ros, executor, tmp_path):
    _, context = ros
    from rclpy.lifecycle import TransitionCallbackReturn

    missing = tmp_path / "missing.pt"
    node = managed_node(context, "method:=gca", f"checkpoint:={missing}")  # constructing it checks nothing yet
    executor.add_node(node)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert state_of(node) == "unconfigured" and node.stage is None


def test_cleanup_stops_the_stage_process(ros, executor):
    _, context = ros
    from rclpy.lifecycle import TransitionCallbackReturn

    from ros_harness import pid_exists, wait_pid_gone

    node = managed_node(context, "worker:=process")
    executor.add_node(node)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    pid = node._stage_process.pid
    assert pid is not None and pid_exists(pid)
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert wait_pid_gone(pid), "the stage process outlived cleanup"
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # a new child
    assert node._stage_process.pid not in (None, pid)


def test_stage_node_lifecycle_true_comes_up_active(ros, executor, children):
    """What the launch files' lifecycle:=true runs: stage_node NODE --lifecycle true."""
    rclpy, context = ros
    from lifecycle_msgs.srv import GetState

    from gen3d_ros.ros.node_main import main

    assert main(["stage_node", "completion_node", "--lifecycle", "maybe"]) == 2  # a usage error, nothing started
    proc = children("completion_node", ["-m", "gen3d_ros.ros.node_main", "completion_node", "--lifecycle", "true",
                                        "--ros-args", "-p", "worker:=thread"])
    client = rclpy.create_node("lifecycle_stage_node_client", context=context)
    executor.add_node(client)
    get_state = client.create_client(GetState, "/completion_node/get_state")
    assert get_state.wait_for_service(timeout_sec=60.0), proc.output()
    future = get_state.call_async(GetState.Request())
    assert spin_until(executor, future.done, 10.0, alive=[proc])
    assert future.result().current_state.label == "active"


def test_managed_action_node_takes_goals_only_while_active(ros):
    rclpy, context = ros
    import threading
    import time

    from geometry_msgs.msg import Point32
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn

    from gen3d_ros.action import PlanTrajectory
    from gen3d_ros.ros.hosts import create_node

    node = create_node("action_node", lifecycle=True, context=context,
                       cli_args=["--ros-args", "-p", "worker:=thread", "-p", "n_gaussians:=200"])
    client_node = rclpy.create_node("managed_action_client", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    for n in (node, client_node):
        executor.add_node(n)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        client = ActionClient(client_node, PlanTrajectory, "/action_node/plan_trajectory")
        assert not client.wait_for_server(timeout_sec=1.0)  # unconfigured: no action server yet
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert client.wait_for_server(timeout_sec=10.0)
        goal = PlanTrajectory.Goal(iterations=2)
        goal.goal_keypoints = [Point32(x=10.0, y=10.0)]

        def accepted() -> bool:
            future = client.send_goal_async(goal)
            deadline = time.monotonic() + 20.0
            while not future.done():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            return future.result().accepted

        assert not accepted()  # inactive
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert accepted()  # (it then aborts: no joint state yet)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert not [w for w in node.waitables if type(w).__name__ == "ActionServer"]  # destroyed with cleanup
    finally:
        executor.shutdown(timeout_sec=2.0)
        for n in (node, client_node):
            n.destroy_node()
