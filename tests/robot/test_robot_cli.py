"""``gen3d estimate-pose`` and ``gen3d act`` (gen3d_ros.cli) on a rendered image of the test arm (untrained model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gen3d_ros.cli import main
from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.geometry.rigid import invert_rigid
from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig, pose_from_matrix
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

CAMERA = PinholeCamera.from_fov(64, 64, 45.0)
T_CAM = sphere_camera(0.7, math.radians(30), 1.1, np.array([0.0, 0.0, 0.3]))
Q = np.array([0.3, 0.4, 0.8, -0.3, 0.2])


def _pose7(T_camera_base: np.ndarray) -> str:
    position, quat = pose_from_matrix(invert_rigid(T_camera_base))
    return ",".join(f"{v:.9f}" for v in [*position, *quat])


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    # the CLI's untrained model: 500 Gaussians, rigid (seed 0), so the image is its own render
    model = RobotGaussianModel.from_robot(load_urdf(test_arm_urdf()), n_gaussians=500, skinning=False, appearance=False)
    rgb = PoseEstimator(model, PoseEstimatorConfig()).render(Q, T_CAM, CAMERA).rgb.clamp(0, 1).numpy()
    path = tmp_path_factory.mktemp("cli") / "arm.png"
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


def test_estimate_pose_known_camera_writes_json_and_overlay(image_path, tmp_path):
    out, overlay = tmp_path / "pose.json", tmp_path / "overlay.png"
    rc = main(["estimate-pose", str(image_path), "--fov-deg", "45", "--known-camera", _pose7(T_CAM),
               "-o", str(out), "--overlay", str(overlay)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["joint_names"] == ["base_yaw", "shoulder", "elbow", "wrist_pitch", "wrist_roll"]
    assert np.allclose(result["T_camera_base"], T_CAM, atol=1e-5) and result["known_camera"]
    assert result["loss"] > 0 and result["seconds"] > 0
    err = np.degrees(np.abs(np.array(result["joint_angles_rad"]) - Q))
    print("estimate-pose known camera: joint errors (deg)", np.round(err, 1))
    assert np.asarray(Image.open(overlay)).shape == (64, 64, 3)


def test_estimate_pose_camera_info_yaml_and_usage_errors(image_path, tmp_path, capsys):
    info = tmp_path / "camera.yaml"
    # the ROS CameraInfo (pixel centres at integers) of the same camera at twice the resolution: scaled to the image
    K = PinholeCamera(2 * CAMERA.fx, 2 * CAMERA.fy, 2 * CAMERA.cx, 2 * CAMERA.cy, 128, 128).camera_info_K
    info.write_text(f"image_width: 128\nimage_height: 128\ncamera_matrix:\n  rows: 3\n  cols: 3\n  data: "
                    f"[{float(K[0, 0])!r}, 0, {float(K[0, 2])!r}, 0, {float(K[1, 1])!r}, {float(K[1, 2])!r}, 0, 0, 1]\n")
    out = tmp_path / "pose.json"
    assert main(["estimate-pose", str(image_path), "--camera-info", str(info), "--known-camera", _pose7(T_CAM),
                 "-o", str(out)]) == 0
    assert len(json.loads(out.read_text())["joint_angles_rad"]) == 5
    # usage errors, into a new path (the existing result would be refused first: outputs are checked before work)
    other = tmp_path / "other.json"
    assert main(["estimate-pose", str(image_path), "-o", str(other)]) == 2  # no intrinsics
    assert "--fov-deg" in capsys.readouterr().err
    assert main(["estimate-pose", str(tmp_path / "missing.png"), "--fov-deg", "45", "-o", str(other)]) == 2
    assert not other.exists()


def test_camera_info_yaml_gives_the_camera_it_describes(tmp_path):
    """The CLI reads a CameraInfo YAML with the same conversion as the nodes (ROS pixel centres at integers, this
    package's at +0.5): a camera written as CameraInfo comes back exactly, at its size and scaled to another."""
    import argparse

    from gen3d_ros.commands.robot import _camera

    info = tmp_path / "camera.yaml"
    K = CAMERA.camera_info_K
    info.write_text(f"width: 64\nheight: 64\nk: [{float(K[0, 0])!r}, 0, {float(K[0, 2])!r}, 0, {float(K[1, 1])!r}, {float(K[1, 2])!r}, 0, 0, 1]\n")
    args = argparse.Namespace(camera_info=info, fov_deg=None)
    cam = _camera(args, 64, 64)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == pytest.approx((CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy), abs=1e-12)
    half = _camera(args, 32, 32)
    assert (half.cx, half.cy, half.fx) == pytest.approx((CAMERA.cx / 2, CAMERA.cy / 2, CAMERA.fx / 2), abs=1e-12)


def test_act_plans_a_trajectory_to_goal_keypoints(tmp_path):
    from gen3d_ros.robot.actions import link_points, project_points

    model = RobotGaussianModel.from_robot(load_urdf(test_arm_urdf()), n_gaussians=500, skinning=False, appearance=False)
    q_goal = torch.tensor([0.6, 0.1, 1.0, 0.2, 0.2])
    with torch.no_grad():
        uv = project_points(link_points(model.fk, q_goal, [model.fk.link_index("tool_tip")]),
                            torch.as_tensor(T_CAM, dtype=torch.float32), CAMERA).numpy()[0]
    out = tmp_path / "trajectory.json"
    rc = main(["act", "--goal-keypoints", f"{uv[0]:.2f},{uv[1]:.2f}:tool_tip", "--current-joints",
               ",".join(str(v) for v in Q), "--camera", _pose7(T_CAM), "--fov-deg", "45", "--width", "64",
               "--height", "64", "--waypoints", "4", "--dt", "0.5", "--iterations", "60", "-o", str(out)])
    assert rc == 0
    traj = json.loads(out.read_text())
    assert traj["objective"] == "keypoints" and len(traj["positions"]) == 4
    assert traj["times_from_start_s"] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    print(f"act: {traj['goal_distance_initial']:.1f} px -> {traj['goal_distance_final']:.2f} px")
    assert traj["goal_distance_final"] < traj["goal_distance_initial"] / 3
    assert main(["act", "--current-joints", "0,0,0,0,0", "--camera", _pose7(T_CAM), "--fov-deg", "45",
                 "-o", str(out)]) == 2  # no goal
