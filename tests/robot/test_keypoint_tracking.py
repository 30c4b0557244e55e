"""Keypoint tracking from a static camera (robot/keypoints/tracking.py): the constant-velocity joint filter, the
camera's bundle adjustment over frames, the innovation gate and re-initialisation, on the test arm's true keypoints
plus noise (no network: the geometry and the filter are under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.keypoints.definition import KeypointSet, project
from gen3d_ros.robot.keypoints.detector import Detection
from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator
from gen3d_ros.robot.keypoints.solve import fit_joints_and_camera
from gen3d_ros.robot.keypoints.tracking import (JointFilter, KeypointResiduals, StaticCameraTracker,
                                                adjust_static_camera)
from gen3d_ros.robot.kinematics import ForwardKinematics
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

CAMERA = PinholeCamera.from_fov(256, 256, 40.0)


@pytest.fixture(scope="module")
def arm():
    robot = load_urdf(test_arm_urdf())
    fk = ForwardKinematics(robot, dtype=torch.float64)
    return robot, fk, KeypointSet.from_robot(robot)


def _motion(robot, frames: int, seed: int = 0, speed: float = 1.0) -> np.ndarray:
    """``[frames, J]`` smooth joint motion (two sinusoids per joint in the middle of the range, as the bench's;
    ``speed`` < 1: the same motion filmed at a higher frame rate)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(robot.lower, np.float64), np.asarray(robot.upper, np.float64)
    t = speed * np.arange(frames)[:, None]
    f1, f2 = rng.uniform(0.01, 0.03, len(lo)), rng.uniform(0.03, 0.06, len(lo))
    ph1, ph2 = rng.uniform(0, 2 * np.pi, (2, len(lo)))
    return lo + (0.5 + 0.2 * np.sin(2 * np.pi * f1 * t + ph1) + 0.1 * np.sin(2 * np.pi * f2 * t + ph2)) * (hi - lo)


def _keypoints(fk, kps, qs: np.ndarray, T: np.ndarray, noise_px: float, seed: int = 1) -> np.ndarray:
    """``[N, K, 2]`` projected keypoints of joints ``qs [N, J]`` plus Gaussian pixel noise."""
    with torch.no_grad():
        uv = project(kps.points(fk, torch.as_tensor(qs)), torch.as_tensor(T), CAMERA)[0].numpy()
    return uv + np.random.default_rng(seed).normal(0, noise_px, uv.shape)


def _camera() -> np.ndarray:
    return sphere_camera(math.radians(30), math.radians(25), 1.8, target=[0, 0, 0.3])


def test_joint_filter_beats_per_frame_fits_on_noisy_keypoints(arm):
    robot, fk, kps = arm
    # a quarter of the bench video's speed (its ~100 deg/s at 30 fps); at the bench's speed (up to 15 deg a frame,
    # 8 deg/frame^2) the constant-velocity prediction is barely better than one frame's keypoints
    qs, T = _motion(robot, 40, speed=0.25), _camera()
    uv = _keypoints(fk, kps, qs, T, noise_px=2.0)
    conf = np.ones(len(kps))
    filt = JointFilter(fk.lower.numpy(), fk.upper.numpy(), accel_std=0.02)
    filt.start(qs[0])
    err_filter, err_frame = [], []
    for i in range(1, len(qs)):
        q_pred = filt.predict()
        up = filt.update(KeypointResiduals(kps, fk, T, CAMERA, uv[i], conf, sigma_px=2.0))
        err_filter.append(np.degrees(np.abs(up.q - qs[i])).mean())
        fit = fit_joints_and_camera(kps, fk, uv[i], conf, CAMERA, q_pred[None], T[None], steps=10, fix_camera=True)[0]
        err_frame.append(np.degrees(np.abs(fit.q - qs[i])).mean())
        assert np.all(up.q_std > 0) and np.isfinite(up.innovation)
    # the same keypoints, the same camera: the motion model removes part of each frame's noise
    assert np.mean(err_filter) < 0.85 * np.mean(err_frame), (np.mean(err_filter), np.mean(err_frame))
    assert np.mean(err_filter) < 2.0


def test_static_camera_adjustment_pins_the_camera_down_from_many_frames(arm):
    robot, fk, kps = arm
    qs, T = _motion(robot, 12, seed=2), _camera()
    uv = _keypoints(fk, kps, qs, T, noise_px=1.5, seed=3)
    conf = np.ones((len(qs), len(kps)))
    T0 = T.copy()  # a wrong start: 3 deg about the optical axis's neighbour, 4 cm off
    T0[:3, :3] = T0[:3, :3] @ np.array([[math.cos(0.05), -math.sin(0.05), 0], [math.sin(0.05), math.cos(0.05), 0],
                                        [0, 0, 1]])
    T0[:3, 3] += [0.03, -0.02, 0.02]
    q0 = qs + np.radians(4) * np.random.default_rng(4).standard_normal(qs.shape)
    T_est, q_est = adjust_static_camera(kps, fk, CAMERA, uv, conf, q0, T0, steps=10)

    def errors(Te: np.ndarray) -> tuple[float, float]:  # (cm, deg)
        cos = (np.trace(Te[:3, :3].T @ T[:3, :3]) - 1) / 2
        return 100 * np.linalg.norm(Te[:3, 3] - T[:3, 3]), math.degrees(math.acos(np.clip(cos, -1, 1)))

    # each frame alone (joints + camera from the same start): the camera's azimuth trades off against the base yaw
    single = np.array([errors(fit_joints_and_camera(kps, fk, uv[i], conf[i], CAMERA, q0[i:i + 1], T0[None],
                                                    steps=10)[0].T_camera_base) for i in range(len(qs))])
    cm, deg = errors(T_est)
    assert cm < 0.6 * np.median(single[:, 0]) and deg < 0.5 * np.median(single[:, 1]), (cm, deg, single)
    assert cm < 1.5 and deg < 1.5
    assert np.degrees(np.abs(q_est - qs)).mean() < 0.8 * np.degrees(np.abs(q0 - qs)).mean()  # 4 deg noise: better


def test_tracker_coasts_over_a_corrupt_frame_and_recovers_from_a_jump(arm):
    robot, fk, kps = arm
    qs, T = _motion(robot, 30, seed=5), _camera()
    qs[20:] = qs[20:] + np.radians([40.0, -25.0, 30.0, 0.0, 0.0])  # the video cuts to another pose at frame 20
    uv = _keypoints(fk, kps, qs, T, noise_px=0.7, seed=6)
    uv[10] = uv[10][::-1].copy()  # frame 10: every keypoint swapped with another (a garbage detection)
    conf = np.ones(len(kps))
    tracker = StaticCameraTracker(kps, fk, KeypointPoseConfig(restarts=24), T, fixed_camera=True)
    tracker.start(qs[0])
    events, errors = {}, []
    for i in range(1, len(qs)):
        fr = tracker.step(uv[i], conf, CAMERA)
        events[i] = fr.event
        errors.append(np.degrees(np.abs(fr.q - qs[i])).mean())
    assert events[10] == "coast" and errors[10 - 1] < 5.0  # the garbage frame is not taken
    assert "reinit" in [events[20], events[21]] and max(errors[22 - 1:]) < 3.0  # the cut is found again
    assert np.mean(errors[:9]) < 2.0


class _Oracle:
    """True keypoints of the frame it is told about, plus noise."""

    def __init__(self, kps, uv: np.ndarray) -> None:
        self.keypoints, self.uv, self.i = kps, uv, 0

    def detect(self, image) -> Detection:
        return Detection(self.uv[self.i].copy(), np.ones(len(self.keypoints)), np.ones(image.shape[:2], np.float32))


def test_track_step_holds_a_static_camera_without_drift(arm):
    robot, fk, kps = arm
    qs, T = _motion(robot, 40, seed=7), _camera()
    oracle = _Oracle(kps, _keypoints(fk, kps, qs, T, noise_px=1.0, seed=8))
    kpe = KeypointPoseEstimator(oracle, None, KeypointPoseConfig(restarts=24), fk=fk)
    image = np.zeros((256, 256, 3), np.uint8)
    prev, joint, cam = None, [], []
    for i in range(len(qs)):
        oracle.i = i
        prev = kpe.track_step(image, CAMERA, prev)  # unknown start: joints and camera from the first frame
        joint.append(np.degrees(np.abs(prev.q - qs[i])).mean())
        cam.append(np.linalg.norm(prev.T_camera_base[:3, 3] - T[:3, 3]))
    assert np.mean(joint[-10:]) <= np.mean(joint[:10]) + 0.5 and np.mean(joint) < 2.0, joint
    assert max(cam[-10:]) < 0.01
    # the camera is one pose from frame 20 on (bundle-adjusted every 5 frames, not re-fitted each frame)
    assert kpe.config.track_static_camera and prev.hypotheses == 1
