"""``gen3d bag`` over a rosbag2 of camera images: the robot pose stage is chosen from the topics and writes its
outputs (RobotPoseEstimate, JointState, PoseStamped, TFMessage) with the inputs' times; and the vendored
tf2_msgs/TFMessage has the real RIHS01 type hash."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))

from robot_scene import CAMERA_FRAME, camera_in_base, frame_messages  # noqa: E402

from gen3d_ros.cli import main  # noqa: E402
from gen3d_ros.io.messages import rosbags_factory  # noqa: E402
from gen3d_ros.io.rosbag2 import read_messages, write_bag  # noqa: E402

T0_NS = 1_700_000_000_000_000_000
REPO = Path(__file__).resolve().parents[2]


def test_bag_mode_estimates_the_pose_of_every_camera_frame(tmp_path: Path, capsys) -> None:
    f = rosbags_factory()
    stamps = [T0_NS, T0_NS + 100_000_000]
    messages = []
    for t in stamps:
        image, info = frame_messages(f, t)
        messages += [("/camera/camera_info", info, t), ("/camera/image_raw", image, t + 1000)]
    write_bag(tmp_path / "cam", messages)
    sets = [f"robot_pose_node:{k}={v}" for k, v in {
        "known_camera": "true", "camera_in_base": json.dumps(camera_in_base()), "estimator.iterations": "[40]",
        "estimator.pyramid_scales": "[1.0]", "estimator.azimuths": 1, "estimator.elevations_deg": "[30.0]",
        "estimator.joint_restarts": 1, "estimator.keep": "[1]", "n_gaussians": 500,
        "estimator.track_iterations": 3}.items()]
    args = ["bag", str(tmp_path / "cam"), "-o", str(tmp_path / "out"), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    report = capsys.readouterr().out
    assert "stage robot_pose: processed 4, rejected 0, failed 0" in report, report

    out = {}
    for m in read_messages(tmp_path / "out"):
        out.setdefault(m.topic, []).append(m)
    # no /tf: publish_tf is off by default (the camera frame has a parent in a real robot's TF)
    assert sorted(out) == ["/robot_pose_node/camera_pose", "/robot_pose_node/camera_pose_with_covariance",
                           "/robot_pose_node/estimate", "/robot_pose_node/joint_states"]
    # written when the pair completed
    assert [m.log_time_ns for m in out["/robot_pose_node/camera_pose"]] == [t + 1000 for t in stamps]
    for m in out["/robot_pose_node/estimate"]:
        est = m.msg
        assert est.header.frame_id == CAMERA_FRAME and list(est.joints.name)[0] == "base_yaw"
        assert np.isfinite(np.asarray(est.joints.position)).all()
    poses = zip(out["/robot_pose_node/camera_pose"], out["/robot_pose_node/camera_pose_with_covariance"])
    for pose, with_cov in poses:
        assert with_cov.msg.header.frame_id == pose.msg.header.frame_id != ""
        p, q = pose.msg.pose.position, with_cov.msg.pose.pose.position
        assert (p.x, p.y, p.z) == (q.x, q.y, q.z)
        assert not np.asarray(with_cov.msg.pose.covariance).any()  # known_camera: the given calibration


def test_pose_covariance_is_the_square_of_pose_std_row_major() -> None:
    import types

    from gen3d_ros.pipeline.robot_pose import RobotPoseStage, RobotPoseStageConfig

    f = rosbags_factory()
    T = np.eye(4)
    T[:3, 3] = [0.5, -0.25, 1.0]
    stage = types.SimpleNamespace(config=RobotPoseStageConfig(pose_std=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
                                  base_frame="base")
    msg = RobotPoseStage._pose_with_covariance(stage, T, f, f.time(1.5))
    cov = np.asarray(msg.pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(np.diag(cov), [0.01, 0.04, 0.09, 0.16, 0.25, 0.36])
    assert not (cov - np.diag(np.diag(cov))).any() and msg.header.frame_id == "base"
    assert (msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z) == (0.5, -0.25, 1.0)
    import pytest

    with pytest.raises(ValueError, match="pose_std must be 6"):
        RobotPoseStageConfig(pose_std=[0.1, 0.2])


def test_bag_mode_calibrates_the_camera_from_frames_and_their_joint_states(tmp_path: Path, capsys) -> None:
    """mode calibrate over a bag with /joint_states (each reading a few ms before its frame): the packaged keypoint
    network's known-joints cameras of 3 frames averaged into one /tf_static transform and ~/calibration."""
    from robot_scene import joint_state, kp_frame_messages, kp_joints, kp_scene

    from gen3d_ros.io.transforms import pose_to_matrix

    f = rosbags_factory()
    robot, _, T_camera_base = kp_scene()
    messages = []
    for i in range(3):
        t, q = T0_NS + i * 10**9, kp_joints(30 + i)
        image, info = kp_frame_messages(f, t, q)
        messages += [("/joint_states", joint_state(f, t - 3_000_000, robot.actuated_joints, q), t - 3_000_000),
                     ("/camera_info", info, t), ("/image", image, t + 1000)]
    write_bag(tmp_path / "cam", messages)
    args = ["bag", str(tmp_path / "cam"), "-o", str(tmp_path / "out"), "--no-progress"]
    for k, v in {"keypoints": "packaged", "mode": "calibrate", "calibrate_frames": 3, "max_image_side": 0,
                 "n_gaussians": 300}.items():
        args += ["--set", f"robot_pose_node:{k}={v}"]
    assert main(args) == 0, capsys.readouterr().err
    out = {}
    for m in read_messages(tmp_path / "out"):
        out.setdefault(m.topic, []).append(m.msg)
    assert len(out["/robot_pose_node/camera_pose"]) == 3 and "/tf" not in out
    (tf,) = out["/tf_static"]
    (cal,) = out["/robot_pose_node/calibration"]
    (transform,) = tf.transforms
    assert (transform.header.frame_id, transform.child_frame_id) == (robot.root, f"{CAMERA_FRAME}_estimated")
    T_cal = pose_to_matrix(cal.pose.pose)
    assert np.linalg.norm(np.linalg.inv(T_cal)[:3, 3] - T_camera_base[:3, 3]) < 0.015
    assert np.asarray(cal.pose.covariance).reshape(6, 6).trace() > 0


def test_vendored_tf_message_has_the_real_type_hash() -> None:
    """rosidl's build of vendor/tf2_msgs and rosbags' Jazzy store (the upstream definition) agree."""
    import pytest
    from rosbags.typesys import Stores, get_typestore

    generated = REPO / "build/ros2/build-tf2_msgs/rosidl_generator_type_description/tf2_msgs/msg/TFMessage.json"
    if not generated.exists():
        pytest.skip(f"no vendored tf2_msgs build at {generated} (a system tf2_msgs is in use, or run "
                    "scripts/build_interfaces.sh)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]}
    store = get_typestore(Stores.ROS2_JAZZY)
    assert hashes["tf2_msgs/msg/TFMessage"] == store.hash_rihs01("tf2_msgs/msg/TFMessage")
    for name, value in hashes.items():
        assert store.hash_rihs01(name) == value, name
