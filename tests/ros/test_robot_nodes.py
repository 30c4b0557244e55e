"""The robot nodes over real DDS: ``robot_pose_node`` answers an Image + CameraInfo of the test arm with its joints
and the camera pose (RobotPoseEstimate, JointState, PoseStamped, /tf), rejects a depth image without dying;
``action_node`` answers a goal + JointState with a JointTrajectory. Small images and few iterations: the fits
run in seconds on a busy 2-core machine."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import yaml

from ros_harness import diagnostic_values, node_diagnostics, spin_until, stamp_ns_of
from robot_scene import CAMERA_FRAME, Q_TRUE, camera_in_base, frame_messages, scene

pytestmark = [pytest.mark.ros, pytest.mark.slow]

T0_NS = 1_700_000_000_000_000_000


def params_file(tmp_path, node: str, values: dict) -> str:
    path = tmp_path / f"{node}.yaml"
    path.write_text(yaml.safe_dump({node: {"ros__parameters": values}}))
    return str(path)


# Known camera, neutral start, 2 levels x 10 steps, one hypothesis: a few seconds per frame. The estimator's
# parameters nested, as a params YAML gives them (rcl reads them as estimator.<field>).
POSE_PARAMS = {
    "known_camera": True, "n_gaussians": 1000, "max_image_side": 64, "input_qos": "reliable",
    "estimator": {"iterations": [10, 40], "pyramid_scales": [0.5, 1.0], "azimuths": 1, "elevations_deg": [30.0],
                  "joint_restarts": 1, "keep": [1, 1]},
}


def test_pose_node_answers_an_image_pair_with_joints_camera_pose_and_tf(ros, executor, children, tmp_path):
    rclpy, context = ros
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    from gen3d_ros.io.joint_state import joint_positions
    from gen3d_ros.io.messages import rclpy_factory
    from gen3d_ros.io.transforms import pose_to_matrix
    from gen3d_ros.msg import RobotPoseEstimate

    params = params_file(tmp_path, "robot_pose_node", {**POSE_PARAMS, "camera_in_base": camera_in_base(),
                                                        "publish_tf": True})
    node_proc = children("robot_pose_node", ["-m", "gen3d_ros.ros.robot_pose_node", "--ros-args",
                                             "--params-file", params])
    node = rclpy.create_node("robot_pose_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    got: dict[str, list] = {"estimate": [], "joints": [], "pose": [], "tf": []}
    node.create_subscription(RobotPoseEstimate, "/robot_pose_node/estimate", got["estimate"].append, reliable)
    node.create_subscription(JointState, "/robot_pose_node/joint_states", got["joints"].append, reliable)
    node.create_subscription(PoseStamped, "/robot_pose_node/camera_pose", got["pose"].append, reliable)
    node.create_subscription(TFMessage, "/tf", got["tf"].append, reliable)
    diag = node_diagnostics(node, "/robot_pose_node", reliable)
    image_pub = node.create_publisher(Image, "/image", reliable)
    info_pub = node.create_publisher(CameraInfo, "/camera_info", reliable)
    alive = [node_proc]
    assert spin_until(executor, lambda: bool(diag) and image_pub.get_subscription_count() > 0
                      and info_pub.get_subscription_count() > 0, 30.0, alive=alive), node_proc.output()

    factory = rclpy_factory()
    image, info = frame_messages(factory, T0_NS)
    info_pub.publish(info)  # the CameraInfo first: the stage pairs in either order
    image_pub.publish(image)
    done = lambda: all(got.values())  # noqa: E731
    assert spin_until(executor, done, 60.0, alive=alive), (
        f"outputs missing: { {k: len(v) for k, v in got.items()} }; {diag[-1:]}\n{node_proc.output()}")

    robot, _, T_camera_base = scene()
    est, joints, pose, tf = got["estimate"][0], got["joints"][0], got["pose"][0], got["tf"][0]
    assert {stamp_ns_of(est), stamp_ns_of(joints), stamp_ns_of(pose), stamp_ns_of(tf.transforms[0])} == {T0_NS}
    assert est.header.frame_id == CAMERA_FRAME
    assert list(joints.name) == robot.actuated_joints == list(est.joints.name)
    assert est.base_frame == robot.root == pose.header.frame_id
    (transform,) = tf.transforms
    # a new child frame: the camera's own frame keeps its parent in the robot's TF
    assert (transform.header.frame_id, transform.child_frame_id) == (robot.root, f"{CAMERA_FRAME}_estimated")
    q = joint_positions(joints, robot.actuated_joints)
    assert np.isfinite(q).all() and math.isfinite(est.photometric_loss) and est.iterations > 0
    # Known camera: the published camera pose is the given one, and TF says the same.
    T_base_camera = pose_to_matrix(pose.pose)
    np.testing.assert_allclose(T_base_camera, np.linalg.inv(T_camera_base), atol=1e-5)
    np.testing.assert_allclose(pose_to_matrix(est.camera_in_base), T_base_camera, atol=1e-6)
    t = transform.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], T_base_camera[:3, 3], atol=1e-6)
    # Joints: a loose bound (untrained rigid model vs mesh renders at 64 px). The wrist roll turns the gripper
    # about its own axis and is nearly invisible at this size, so it is left out.
    error = np.abs(q - Q_TRUE)[:4]
    assert error.mean() < 0.4, f"joint errors {np.round(q - Q_TRUE, 3)} rad"

    # A depth image (32FC1) with its CameraInfo is rejected with the reason; the node stays up.
    rejected_before = int(diagnostic_values(diag[-1])["rejected"])
    bad_image, bad_info = frame_messages(factory, T0_NS + 10**9, rgb=np.zeros((64, 64), np.float32),
                                         encoding="32FC1")
    info_pub.publish(bad_info)
    image_pub.publish(bad_image)
    assert spin_until(executor, lambda: int(diagnostic_values(diag[-1])["rejected"]) > rejected_before, 20.0,
                      alive=alive), diag[-1]
    assert "32FC1" in diagnostic_values(diag[-1])["last_error"]
    assert node_proc.alive()


def test_pose_node_calibrate_mode_uses_the_encoders_and_latches_the_static_transform(ros, executor, children,
                                                                                     tmp_path):
    """mode calibrate with the packaged keypoint network: each frame's camera from the encoders' JointState (keypoints
    + PnP), the average of 3 frames on /tf_static and ~/calibration, which a subscriber that joins later still gets
    (transient local); a malformed JointState is rejected and the node stays up."""
    rclpy, context = ros
    from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from tf2_msgs.msg import TFMessage

    from gen3d_ros.io.messages import rclpy_factory
    from gen3d_ros.io.transforms import pose_to_matrix
    from robot_scene import joint_state, kp_frame_messages, kp_joints, kp_scene

    params = params_file(tmp_path, "robot_pose_node", {
        "keypoints": "packaged", "mode": "calibrate", "calibrate_frames": 3, "max_image_side": 0, "n_gaussians": 300,
        "input_qos": "reliable"})
    node_proc = children("robot_pose_node", ["-m", "gen3d_ros.ros.robot_pose_node", "--ros-args",
                                             "--params-file", params])
    node = rclpy.create_node("robot_calibrate_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    poses: list = []
    node.create_subscription(PoseStamped, "/robot_pose_node/camera_pose", poses.append, reliable)
    diag = node_diagnostics(node, "/robot_pose_node", reliable)
    image_pub = node.create_publisher(Image, "/image", reliable)
    info_pub = node.create_publisher(CameraInfo, "/camera_info", reliable)
    joints_pub = node.create_publisher(JointState, "/joint_states", reliable)
    alive = [node_proc]
    assert spin_until(executor, lambda: bool(diag) and all(p.get_subscription_count() > 0 for p in
                                                           (image_pub, info_pub, joints_pub)), 30.0, alive=alive), \
        node_proc.output()

    factory = rclpy_factory()
    robot, _, T_camera_base = kp_scene()
    for i in range(3):  # one frame at a time: the node keeps only the newest image
        stamp, q = T0_NS + i * 10**9, kp_joints(10 + i)
        image, info = kp_frame_messages(factory, stamp, q)
        # whichever arrives first: a frame waits for its joints in calibrate mode
        joints_pub.publish(joint_state(factory, stamp - 5_000_000, robot.actuated_joints, q))
        info_pub.publish(info)
        image_pub.publish(image)
        assert spin_until(executor, lambda: len(poses) > i, 60.0, alive=alive), (diag[-1:], node_proc.output())
    for pose in poses:  # known joints: the camera by PnP within a few cm in the base frame
        T_base_camera = pose_to_matrix(pose.pose)
        assert np.linalg.norm(np.linalg.inv(T_base_camera)[:3, 3] - T_camera_base[:3, 3]) < 0.02

    # a late subscriber gets the latched results
    latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    tf_static: list = []
    calibration: list = []
    node.create_subscription(TFMessage, "/tf_static", tf_static.append, latched)
    node.create_subscription(PoseWithCovarianceStamped, "/robot_pose_node/calibration", calibration.append, latched)
    assert spin_until(executor, lambda: tf_static and calibration, 20.0, alive=alive), diag[-1:]
    (transform,) = tf_static[0].transforms
    assert (transform.header.frame_id, transform.child_frame_id) == (robot.root, f"{CAMERA_FRAME}_estimated")
    T_cal = pose_to_matrix(calibration[0].pose.pose)
    assert np.linalg.norm(np.linalg.inv(T_cal)[:3, 3] - T_camera_base[:3, 3]) < 0.015
    assert np.asarray(calibration[0].pose.covariance).reshape(6, 6).trace() > 0
    assert spin_until(executor, lambda: diagnostic_values(diag[-1]).get("calibrated") == "1.000", 5.0, alive=alive)

    # a JointState whose names and positions differ in length: rejected with the reason, the node stays up
    rejected = int(diagnostic_values(diag[-1])["rejected"])
    bad = joint_state(factory, T0_NS, robot.actuated_joints, kp_joints(0))
    bad.position = [0.0, 1.0]
    joints_pub.publish(bad)
    assert spin_until(executor, lambda: int(diagnostic_values(diag[-1])["rejected"]) > rejected, 20.0, alive=alive)
    assert "names but 2 positions" in diagnostic_values(diag[-1])["last_error"]
    assert node_proc.alive()


def test_action_node_answers_a_keypoint_goal_with_a_timed_joint_trajectory(ros, executor, children, tmp_path):
    rclpy, context = ros
    from geometry_msgs.msg import Point32, PolygonStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, JointState
    from trajectory_msgs.msg import JointTrajectory

    from gen3d_ros.io.joint_state import joint_state_msg, joint_trajectory_arrays
    from gen3d_ros.io.messages import make_header, rclpy_factory
    from gen3d_ros.msg import RobotAction

    params = params_file(tmp_path, "action_node", {
        "known_camera": True, "camera_in_base": camera_in_base(), "mpc.iterations": 15, "mpc.waypoints": 4,
        "mpc.dt": 0.5, "n_gaussians": 500, "input_qos": "reliable"})
    node_proc = children("action_node", ["-m", "gen3d_ros.ros.action_node", "--ros-args", "--params-file", params])
    node = rclpy.create_node("action_test", context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    trajectories: list = []
    actions: list = []
    node.create_subscription(JointTrajectory, "/action_node/trajectory", trajectories.append, reliable)
    node.create_subscription(RobotAction, "/action_node/action", actions.append, reliable)
    joints_pub = node.create_publisher(JointState, "/joint_states", reliable)
    info_pub = node.create_publisher(CameraInfo, "/camera_info", reliable)
    goal_pub = node.create_publisher(PolygonStamped, "/goal_keypoints", reliable)
    alive = [node_proc]
    assert spin_until(executor, lambda: all(p.get_subscription_count() for p in (joints_pub, info_pub, goal_pub)),
                      30.0, alive=alive), node_proc.output()

    robot, _, _ = scene()
    factory = rclpy_factory()
    _, info = frame_messages(factory, T0_NS)
    goal = PolygonStamped(header=make_header(factory, frame_id=CAMERA_FRAME, stamp=factory.time(sec=7)))
    goal.polygon.points = [Point32(x=40.0, y=20.0, z=0.0)]  # where the tool tip should go, pixels
    deadline = time.monotonic() + 60.0
    while not (trajectories and actions):  # state first, then the goal; resend until planned
        assert time.monotonic() < deadline, node_proc.output()
        joints_pub.publish(joint_state_msg(robot.actuated_joints, np.zeros(5), factory,
                                           header=make_header(factory, stamp=factory.time(sec=7))))
        info_pub.publish(info)
        spin_until(executor, lambda: False, 0.3, alive=alive)
        goal_pub.publish(goal)
        spin_until(executor, lambda: bool(trajectories and actions), 5.0, alive=alive)

    names, positions, times = joint_trajectory_arrays(trajectories[0])
    assert names == robot.actuated_joints
    assert positions.shape == (4, 5) and np.isfinite(positions).all()
    assert times[0] > 0 and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, [0.5, 1.0, 1.5, 2.0], atol=1e-6)
    assert stamp_ns_of(trajectories[0]) == 7 * 10**9
    action = actions[0]
    assert action.objective == "keypoints" and math.isfinite(action.final_cost)
    assert action.final_cost <= action.initial_cost
    assert list(action.trajectory.joint_names) == names
