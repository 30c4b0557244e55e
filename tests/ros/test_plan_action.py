"""action_node's ~/plan_trajectory action over real rclpy: a keypoint goal -> one feedback per Adam iteration with
its cost -> a JointTrajectory of the goal's horizon whose cost is no higher than at the start; a cancel mid-run
ends the goal CANCELED with fewer iterations; a goal with no goal kind is rejected."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from conftest import require_rclpy  # noqa: F401 - the ros fixture skips without rclpy
from robot_scene import CAMERA_FRAME, camera_in_base, frame_messages, scene

pytestmark = [pytest.mark.ros]


def wait(predicate, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def planner(ros):
    """(action node, ActionClient) spinning in a MultiThreadedExecutor thread; the node has its state."""
    rclpy, context = ros
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import CameraInfo, JointState

    from gen3d_ros.action import PlanTrajectory
    from gen3d_ros.io.joint_state import joint_state_msg
    from gen3d_ros.io.messages import make_header, rclpy_factory
    from gen3d_ros.ros.hosts import create_node
    from gen3d_ros.ros.stage_node import output_qos_profile

    pose = ",".join(f"{v:.9f}" for v in camera_in_base())
    node = create_node("action_node", context=context, cli_args=[
        "--ros-args", "-p", "worker:=thread", "-p", "known_camera:=true", "-p", f"camera_in_base:=[{pose}]",
        "-p", "mpc.iterations:=30", "-p", "mpc.waypoints:=6", "-p", "n_gaussians:=300"])
    client_node = rclpy.create_node("plan_action_client", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        factory = rclpy_factory()
        robot, _, _ = scene()
        joints = client_node.create_publisher(JointState, node.input_topics["joint_states"], output_qos_profile(False))
        info_pub = client_node.create_publisher(CameraInfo, node.input_topics["camera_info"], output_qos_profile(False))
        _, info = frame_messages(factory, 10**9)
        assert wait(lambda: joints.get_subscription_count() and info_pub.get_subscription_count(), 20.0)
        joints.publish(joint_state_msg(robot.actuated_joints, np.zeros(5), factory,
                                       header=make_header(factory, stamp=factory.time(sec=1))))
        info_pub.publish(info)
        assert wait(lambda: {"joint_states", "camera_info"} <= set(node._latest), 20.0)
        client = ActionClient(client_node, PlanTrajectory, f"{node.get_fully_qualified_name()}/plan_trajectory")
        assert client.wait_for_server(timeout_sec=10.0)
        yield node, client
    finally:
        executor.shutdown(timeout_sec=2.0)
        for n in (node, client_node):
            n.destroy_node()


def keypoint_goal(iterations: int, waypoints: int):
    from geometry_msgs.msg import Point32

    from gen3d_ros.action import PlanTrajectory

    goal = PlanTrajectory.Goal(iterations=iterations, waypoints=waypoints)
    goal.goal_keypoints = [Point32(x=40.0, y=20.0, z=0.0)]  # where the tool tip should go, pixels
    return goal


def send(client, goal, feedback: list):
    future = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait(future.done, 30.0)
    return future.result()


def test_goal_gives_feedback_per_iteration_then_a_trajectory(planner):
    from action_msgs.msg import GoalStatus

    node, client = planner
    feedback: list = []
    handle = send(client, keypoint_goal(iterations=25, waypoints=3), feedback)
    assert handle.accepted
    result_future = handle.get_result_async()
    assert wait(result_future.done, 120.0)
    answer = result_future.result()
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.message
    result = answer.result
    assert result.iterations == 25
    assert wait(lambda: len(feedback) == 25, 5.0), len(feedback)
    assert [f.iteration for f in feedback] == list(range(1, 26))
    best = [f.best_cost for f in feedback]
    assert all(math.isfinite(f.cost) for f in feedback) and all(b2 <= b1 for b1, b2 in zip(best, best[1:]))
    assert feedback[-1].best_cost < feedback[0].cost  # the optimisation made progress
    assert result.final_cost <= result.initial_cost
    assert len(result.trajectory.points) == 3  # the goal's horizon, not the node's 6
    assert list(result.trajectory.joint_names) == scene()[0].actuated_joints
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in result.trajectory.points]
    assert times[0] > 0 and all(b > a for a, b in zip(times, times[1:]))


def test_cancel_mid_run_ends_the_goal_canceled(planner):
    from action_msgs.msg import GoalStatus

    node, client = planner
    feedback: list = []
    handle = send(client, keypoint_goal(iterations=100_000, waypoints=0), feedback)
    assert handle.accepted
    assert wait(lambda: len(feedback) >= 3, 60.0)
    cancel = handle.cancel_goal_async()
    assert wait(cancel.done, 30.0) and len(cancel.result().goals_canceling) == 1
    result_future = handle.get_result_async()
    assert wait(result_future.done, 60.0)
    answer = result_future.result()
    assert answer.status == GoalStatus.STATUS_CANCELED, answer.result.message
    assert 3 <= answer.result.iterations < 100_000
    assert len(answer.result.trajectory.points) == 6  # the node's mpc.waypoints: the best trajectory so far
    assert "canceled" in answer.result.message


def test_goal_without_a_goal_kind_is_rejected(planner):
    from gen3d_ros.action import PlanTrajectory

    _, client = planner
    assert not send(client, PlanTrajectory.Goal(), []).accepted
