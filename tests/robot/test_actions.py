"""Actions from pixels (gen3d_ros.robot.actions): visual MPC, trajectories, retargeting from point tracks.

The untrained rigid Gaussian model of the test arm (500 Gaussians) renders goals and plans at 64x64 on CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d_ros.robot.actions import (
    ActionProcessor,
    actions_from_video,
    ImageGoal,
    KeypointGoal,
    ScoreGoal,
    Trajectory,
    VisualMPC,
    VisualMPCConfig,
    link_points,
    project_points,
    retarget_point_tracks,
    smooth_trajectory,
)
from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.gaussians import RobotGaussianModel
from gen3d_ros.robot.pose import PoseEstimator, PoseEstimatorConfig
from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf

CAMERA = PinholeCamera.from_fov(64, 64, 45.0)
T_CAM = torch.as_tensor(sphere_camera(0.7, math.radians(30), 1.1, np.array([0.0, 0.0, 0.3])), dtype=torch.float32)
LINKS = ["forearm", "wrist", "finger_left", "finger_right", "tool_tip"]


@pytest.fixture(scope="module")
def model():
    return RobotGaussianModel.from_robot(load_urdf(test_arm_urdf()), n_gaussians=500, skinning=False, appearance=False)


def _goal_pixels(model, q: torch.Tensor, links=LINKS) -> np.ndarray:
    idx = [model.fk.link_index(l) for l in links]
    with torch.no_grad():
        return project_points(link_points(model.fk, q, idx), T_CAM, CAMERA).numpy()


def test_keypoint_goal_mpc_reduces_distance_and_respects_limits(model):
    """Measured: 25 px -> ~1 px mean distance of 5 link points."""
    q0 = torch.tensor([0.2, 0.3, 0.6, -0.3, 0.0])
    q_goal = torch.tensor([0.7, -0.2, 1.1, 0.4, 0.8])
    cfg = VisualMPCConfig(waypoints=6, dt=0.5, iterations=150, lr=0.2)
    plan = VisualMPC(model, cfg).plan(KeypointGoal(_goal_pixels(model, q_goal), LINKS), q0, T_CAM, CAMERA)
    print(f"keypoint MPC: {plan.goal_distance_initial:.1f} px -> {plan.goal_distance_final:.2f} px, {plan.seconds:.2f} s")
    assert plan.goal_distance_final < plan.goal_distance_initial / 5
    assert plan.final_cost < plan.initial_cost
    traj = plan.trajectory
    assert traj.positions.shape == (6, 5) and np.allclose(traj.times_from_start, 0.5 * np.arange(1, 7))
    assert np.all(traj.positions >= model.fk.lower.numpy() - 1e-6)
    assert np.all(traj.positions <= model.fk.upper.numpy() + 1e-6)
    steps = np.abs(np.diff(np.vstack([q0.numpy(), traj.positions]), axis=0)) / cfg.dt
    assert steps.max() < 1.5 * cfg.max_velocity  # the soft velocity cost keeps it near the limit


def test_image_goal_mpc_reduces_image_distance(model):
    """Measured: image loss roughly halves or better for a 20-35 deg joint offset."""
    q0 = torch.tensor([0.3, 0.2, 0.8, 0.2, 0.0])
    q_goal = q0 + torch.tensor([0.35, 0.3, -0.4, 0.3, 0.0])
    mpc = VisualMPC(model, VisualMPCConfig(waypoints=4, dt=0.5, iterations=50, lr=0.1))
    goal = mpc.model.render(q_goal, T_CAM, CAMERA, background=mpc.background).rgb.clamp(0, 1).detach()
    plan = mpc.plan(ImageGoal(goal), q0, T_CAM, CAMERA)
    err0 = float(np.abs(q0 - q_goal).mean())
    err1 = float(np.abs(plan.trajectory.positions[-1] - q_goal.numpy()).mean())
    print(f"image MPC: loss {plan.goal_distance_initial:.4f} -> {plan.goal_distance_final:.4f}; joint error "
          f"{math.degrees(err0):.1f} -> {math.degrees(err1):.1f} deg, {plan.seconds:.1f} s")
    assert plan.goal_distance_final < plan.goal_distance_initial / 2
    assert err1 < err0


def test_score_goal_plugs_in_any_differentiable_image_score(model):
    # "make the image redder": a stand-in for a CLIP text score
    score = ScoreGoal(lambda rgb: rgb[..., 0].mean() - rgb[..., 1:].mean(), name="redness")
    plan = VisualMPC(model, VisualMPCConfig(waypoints=2, iterations=5)).plan(score, np.zeros(5), T_CAM, CAMERA)
    assert plan.objective == "redness" and plan.goal_distance_final <= plan.goal_distance_initial + 1e-6


def test_retargeting_from_point_tracks_recovers_the_trajectory(model):
    """Synthetic tracks of 5 link points over 10 frames of a smooth motion, started from the robot's state at the
    first frame (2D tracks alone are ambiguous up to mirrored arm configurations)."""
    t = np.linspace(0.0, 1.0, 10)[:, None]
    q_true = torch.as_tensor(np.array([0.2, 0.3, 0.7, -0.4, 0.5]) + t * np.array([0.8, -0.5, 0.4, 0.6, -0.6]),
                             dtype=torch.float32)
    tracks = _goal_pixels(model, q_true)  # [T, P, 2]
    traj, residual = retarget_point_tracks(tracks, LINKS, model.fk, T_CAM.numpy(), CAMERA, dt=0.1, w_smooth=0.01,
                                             q_init=q_true[0].numpy(), iterations=400)
    err = np.degrees(np.abs(traj.positions - q_true.numpy()))
    print(f"retargeting: residual {residual.mean():.2f} px, joint error mean {err.mean():.2f} deg, max {err.max():.2f}")
    assert residual.mean() < 1.0
    assert err.mean() < 3.0
    assert np.allclose(traj.times_from_start, 0.1 * np.arange(10))


def test_trajectory_fields_and_smoothing():
    traj = Trajectory(["a", "b"], np.array([[0.0, 1.0], [0.5, 1.0], [1.0, 1.0]]), np.array([0.5, 1.0, 1.75]))
    fields = traj.joint_trajectory_fields()
    assert fields["joint_names"] == ["a", "b"] and len(fields["points"]) == 3
    assert fields["points"][2]["time_from_start"] == {"sec": 1, "nanosec": 750_000_000}
    assert fields["points"][0]["velocities"] == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="increasing"):
        Trajectory(["a"], np.zeros((2, 1)), np.array([1.0, 1.0]))
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 3, 40))[:, None] * np.ones((1, 3))
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    smooth = smooth_trajectory(noisy, weight=20.0)
    assert np.abs(smooth - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_action_processor_accepts_image_and_keypoint_goals(model):
    processor = ActionProcessor(model, VisualMPCConfig(waypoints=3, iterations=10))
    q0 = np.zeros(5)
    goal = {"pixels": _goal_pixels(model, torch.tensor([0.5, 0.4, 0.6, 0.2, 0.0]), ["tool_tip"]), "links": ["tool_tip"]}
    result = processor.plan(goal, q0, T_CAM.numpy(), CAMERA, stamp=3.0)
    assert result.objective == "keypoints" and result.stamp == 3.0
    assert result.trajectory.joint_names == processor.joint_names
    assert result.final_cost <= result.initial_cost
    image = np.full((64, 64, 3), 255, dtype=np.uint8)
    image[20:40, 28:36] = (200, 30, 30)
    assert processor.plan(image, q0, T_CAM.numpy(), CAMERA).objective == "image"
    with pytest.raises(ValueError, match="q_current"):
        processor.plan(goal, np.zeros(3), T_CAM.numpy(), CAMERA)


def test_actions_from_video_recovers_a_smooth_joint_trajectory(model):
    """A rendered 8-frame video of a smooth joint motion seen by a known camera, the robot's state at the start
    known 10 deg (std) off (``initial``; from scratch at 64 px the known-camera estimate can land in a mirrored
    arm configuration) -> tracked per-frame estimates -> smoothed, limit-clamped trajectory at 0, dt, ... s."""
    estimator = PoseEstimator(model, PoseEstimatorConfig(track_iterations=15))
    t = np.linspace(0.0, 1.0, 8)[:, None]
    q_true = torch.as_tensor(np.array([0.3, 0.4, 0.8, -0.3, 0.2]) + t * np.array([0.5, -0.3, 0.3, 0.4, -0.4]),
                             dtype=torch.float32)
    frames = [estimator.render(q, T_CAM, CAMERA).rgb.clamp(0, 1).numpy() for q in q_true]
    guess = q_true[0] + torch.as_tensor(np.random.default_rng(0).normal(0, math.radians(10), 5), dtype=torch.float32)
    initial = estimator.refine(frames[0], CAMERA, guess, T_CAM, iterations=0)  # a PoseEstimate at the guess
    traj, estimates = actions_from_video(frames, CAMERA, estimator, dt=0.1, smoothing=2.0, T_camera_base=T_CAM.numpy(),
                                         initial=initial)
    err = np.degrees(np.abs(traj.positions - q_true.numpy()))
    print(f"actions from video: joint error mean {err.mean():.2f} deg, max {err.max():.2f} deg; "
          f"{sum(e.seconds for e in estimates):.1f} s")
    assert len(estimates) == 8 and traj.positions.shape == (8, 5)
    assert traj.joint_names == list(model.fk.joint_names)
    assert np.allclose(traj.times_from_start, 0.1 * np.arange(8))
    assert np.all(traj.positions >= model.fk.lower.numpy() - 1e-9) and np.all(traj.positions <= model.fk.upper.numpy() + 1e-9)
    assert err.mean() < 6.0  # measured 3.6 deg
    # smooth: no jumps between consecutive waypoints bigger than the true motion's (~5 deg/frame) by far
    assert np.degrees(np.abs(np.diff(traj.positions, axis=0))).max() < 15.0
