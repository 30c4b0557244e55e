"""The robot half of ``gen3d demo``: a video of the test arm -> pose per frame in bag mode -> joint trajectory.

1. ``robot_video/``: a rosbag2 of a smooth motion of the packaged 5-DoF test arm seen by a fixed, calibrated
   camera: ``sensor_msgs/Image`` (rgb8) on ``/camera/image_raw`` and ``sensor_msgs/CameraInfo`` on
   ``/camera/camera_info`` (ground-truth renders of the URDF meshes, :class:`RobotMeshRenderer`);
2. ``robot_poses/``: bag mode with the ``robot_pose`` stage (the robot_pose_node's processor) over it, from an
   unknown start (no joint reading, no calibrated camera): the packaged keypoint network finds the arm in each
   frame, FK fitting gives joints and camera, the packaged Dr. Robot model refines them by render-and-compare
   (:mod:`gen3d_ros.robot.keypoints`): ``RobotPoseEstimate``, ``JointState``, camera ``PoseStamped`` (and with
   covariance) per frame. Without a packaged keypoint network: known camera + the first joint reading;
   ``calibration.json``: the camera-to-robot calibration from the frames and their joint readings (keypoints +
   PnP per frame, averaged; what ``gen3d calibrate-camera`` does), with its error against the true
   camera;
3. ``trajectory.json``: the estimated joint states smoothed into a ``trajectory_msgs/JointTrajectory``
   (names, positions, ``time_from_start``) -- the "actions from a video" use of Dr. Robot;
4. ``overlay.gif``: input | estimate rendered by the model over the input, per frame;
   ``joints.png``: estimated vs true joint angles.

Every file is written through :mod:`gen3d_ros.outputs` (atomically, marked as a gen3d_ros output); the bags by
:class:`~gen3d_ros.io.rosbag2.BagWriter` and bag mode (atomic and marked too).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.outputs import save_figure, save_image, write_json

log = logging.getLogger("gen3d_ros.demo")

ROBOT_IMAGE_TOPIC = "/camera/image_raw"
ROBOT_INFO_TOPIC = "/camera/camera_info"
ROBOT_CAMERA_FRAME = "demo_camera_optical"
ROBOT_FRAME_PERIOD_S = 0.25


@dataclass
class RobotDemoReport:
    frames: int
    image_size: int
    model: str
    joint_err_deg_mean: float = math.nan
    joint_err_deg_per_joint: dict[str, float] = field(default_factory=dict)
    trajectory_err_deg_mean: float = math.nan
    mean_latency_ms: float = math.nan
    timings_s: dict[str, float] = field(default_factory=dict)
    method: str = ""
    add_cm_mean: float = math.nan
    calibration: dict[str, float] = field(default_factory=dict)


def true_motion(lower: np.ndarray, upper: np.ndarray, frames: int) -> np.ndarray:
    """[frames, J] radians: a smooth reach, every joint easing (half a cosine) over 25 % of its range, joints out
    of phase; at most ~10 deg per frame for the test arm at 16 frames (what a 4 Hz camera sees of a slow arm)."""
    mid, span = (lower + upper) / 2.0, 0.25 * (upper - lower)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    direction = np.where(np.arange(len(lower)) % 2 == 0, 1.0, -1.0)[None, :]
    start = mid - 0.5 * span * direction + 0.1 * (upper - lower) * np.sin(np.arange(len(lower)))[None, :]
    return start + span * direction * 0.5 * (1.0 - np.cos(math.pi * t))


def _camera(size: int, robot: Any, q: np.ndarray):
    """A 45 deg camera, 25 deg above the arm, framing the arm over the whole motion ``q`` [T, J]."""
    import torch

    from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
    from gen3d_ros.robot.kinematics import ForwardKinematics
    from gen3d_ros.robot.meshes import posed_mesh
    from gen3d_ros.sim.robot_dataset import fitting_distance

    camera = PinholeCamera.from_fov(size, size, 45.0)
    fk = ForwardKinematics(robot, dtype=torch.float64)
    with torch.no_grad():
        poses = fk(torch.as_tensor(q)).numpy()
    vertices = np.concatenate([posed_mesh(robot, T)[0] for T in poses])
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    distance = 1.05 * fitting_distance(radius, camera)
    return camera, sphere_camera(0.7, math.radians(25.0), distance, target=centre)


def write_robot_video_bag(path: Path, frames: list[np.ndarray], camera: Any, storage: str | None,
                          t0_ns: int) -> list[int]:
    """Image + CameraInfo per frame (same stamp), log time = stamp; returns the stamps (ns)."""
    from gen3d_ros.io.camera_info import CameraIntrinsics, intrinsics_to_camera_info
    from gen3d_ros.io.image import array_to_image
    from gen3d_ros.io.messages import make_header, rosbags_factory
    from gen3d_ros.io.rosbag2 import BagWriter

    f = rosbags_factory()
    K = camera.camera_info_K  # PinholeCamera puts pixel centres at +0.5, ROS CameraInfo at integers
    stamps = []
    with BagWriter(path, storage=storage) as out:
        out.add_topic(ROBOT_INFO_TOPIC, "sensor_msgs/msg/CameraInfo")
        out.add_topic(ROBOT_IMAGE_TOPIC, "sensor_msgs/msg/Image")
        for i, rgb in enumerate(frames):
            stamp = t0_ns + int(round(i * ROBOT_FRAME_PERIOD_S * 1e9))
            header = make_header(f, frame_id=ROBOT_CAMERA_FRAME, stamp=f.time(sec=stamp // 10**9,
                                                                                 nanosec=stamp % 10**9))
            info = intrinsics_to_camera_info(CameraIntrinsics(K, np.zeros(5), camera.width, camera.height), f,
                                             header=header)
            out.write(ROBOT_INFO_TOPIC, info, stamp)
            out.write(ROBOT_IMAGE_TOPIC, array_to_image(rgb, "rgb8", f, header=header), stamp)
            stamps.append(stamp)
    return stamps


def save_overlay_gif(path: Path, frames: list[np.ndarray], renders: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Per frame: the input | the model's render of the estimate blended over it (alpha 0.6, tinted magenta)."""
    from PIL import Image

    images = []
    for rgb, (render, alpha) in zip(frames, renders):
        base = rgb.astype(np.float32) / 255.0
        tint = 0.5 * render + 0.5 * np.array([1.0, 0.0, 1.0])
        a = 0.6 * np.clip(alpha, 0, 1)[..., None]
        over = base * (1 - a) + tint * a
        pair = np.concatenate([base, np.ones((base.shape[0], 4, 3)), over], axis=1)
        img = Image.fromarray((np.clip(pair, 0, 1) * 255).astype(np.uint8)).resize(
            (pair.shape[1] * 3, pair.shape[0] * 3), Image.NEAREST)
        images.append(img)
    save_image(images[0], path, save_all=True, append_images=images[1:], duration=int(ROBOT_FRAME_PERIOD_S * 1000),
               loop=0)


def save_joint_plot(path: Path, names: list[str], times: np.ndarray, q_true: np.ndarray, q_est: np.ndarray,
                    q_traj: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), sharex=True)
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(times, np.degrees(q_true[:, j]), "k-", lw=2, label="true")
        ax.plot(times, np.degrees(q_est[:, j]), "o", ms=4, color="C1", label="estimated per frame")
        ax.plot(times, np.degrees(q_traj[:, j]), "-", color="C0", label="extracted trajectory")
        ax.set(title=names[j], xlabel="t [s]")
        if j == 0:
            ax.set_ylabel("joint angle [deg]")
            ax.legend(fontsize=7)
    fig.suptitle("test arm: joint angles estimated from the video vs ground truth", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def run_robot_demo(work: Path, *, frames: int = 16, size: int = 160, storage: str | None = None,
                   t0_ns: int = 1_700_000_000 * 10**9, progress: bool = False) -> RobotDemoReport:
    """Write ``robot_video/``, ``robot_poses/``, ``trajectory.json``, ``overlay.gif`` and ``joints.png`` into
    ``work``; returns the report (errors in degrees, latency per frame)."""
    import torch

    from gen3d_ros.bagmode import run_bag
    from gen3d_ros.io.joint_state import joint_positions
    from gen3d_ros.io.rosbag2 import read_messages
    from gen3d_ros.robot.actions import Trajectory, smooth_trajectory
    from gen3d_ros.robot.urdf import load_urdf, test_arm_urdf
    from gen3d_ros.sim.robot_render import RobotMeshRenderer

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    robot = load_urdf(test_arm_urdf())
    q_true = true_motion(robot.lower, robot.upper, frames)
    camera, T_camera_base = _camera(size, robot, q_true)
    renderer = RobotMeshRenderer(robot)
    video = [(renderer.render(q, T_camera_base, camera).rgb * 255).round().astype(np.uint8) for q in q_true]
    stamps = write_robot_video_bag(work / "robot_video", video, camera, storage, t0_ns)
    timings["render_video"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stage, topics, kpe = _pose_stage(robot, q_true, T_camera_base)
    bag = run_bag(work / "robot_video", work / "robot_poses", stages=[stage], topic_map=topics, copy_inputs=True,
                  progress=progress, storage=storage)
    timings["pose_bag_mode"] = time.perf_counter() - t0
    stats = bag.as_dict()["stages"]["robot_pose"]

    t0 = time.perf_counter()
    names = list(robot.actuated_joints)
    by_stamp = {}
    for m in read_messages(work / "robot_poses", ["/robot_pose_node/joint_states"]):
        s = m.msg.header.stamp
        by_stamp[s.sec * 10**9 + s.nanosec] = joint_positions(m.msg, names)
    got = [i for i, s in enumerate(stamps) if s in by_stamp]
    report = RobotDemoReport(frames=frames, image_size=size, model=str(getattr(stage, "model_id", "")),
                             mean_latency_ms=float(stats.get("mean_latency_ms", math.nan)), timings_s=timings,
                             method="keypoints + Dr. Robot, unknown start" if kpe else "Dr. Robot, known camera")
    if not got:
        log.warning("robot demo: no pose estimate came out of bag mode (%s)", stats)
        return report
    q_est = np.stack([by_stamp[stamps[i]] for i in got])
    times = np.array([i * ROBOT_FRAME_PERIOD_S for i in got])
    q_traj = np.clip(smooth_trajectory(q_est, 2.0), robot.lower, robot.upper)
    trajectory = Trajectory(names, q_traj, times - times[0])
    write_json(work / "trajectory.json", trajectory.joint_trajectory_fields(), indent=1)
    err = np.degrees(np.abs(q_est - q_true[got]))
    report.joint_err_deg_mean = float(err.mean())
    report.joint_err_deg_per_joint = {n: float(e) for n, e in zip(names, err.mean(0))}
    report.trajectory_err_deg_mean = float(np.degrees(np.abs(q_traj - q_true[got])).mean())
    cameras = _estimated_cameras(work / "robot_poses", stamps, got) if kpe else [T_camera_base] * len(got)
    report.add_cm_mean = _add_cm(robot, q_est, cameras, q_true[got], T_camera_base)
    timings["trajectory"] = time.perf_counter() - t0
    if kpe is not None:
        t0 = time.perf_counter()
        report.calibration = _calibrate(work, kpe, video, camera, q_true, T_camera_base)
        timings["calibration"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = stage.processor.estimator.model
    renders = []
    if model is not None:
        with torch.no_grad():
            for q, T in zip(q_est, cameras):
                out = model.render(torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(T, dtype=torch.float32),
                                   camera, background=torch.ones(3))
                renders.append((out.rgb.numpy(), out.alpha.numpy()))
        save_overlay_gif(work / "overlay.gif", [video[i] for i in got], renders)
    save_joint_plot(work / "joints.png", names, times, q_true[got], q_est, q_traj)
    timings["figures"] = time.perf_counter() - t0
    return report


def _pose_stage(robot: Any, q_true: np.ndarray, T_camera_base: np.ndarray):
    """``(stage, topic map, KeypointPoseEstimator or None)``: the robot_pose stage of bag mode for the demo."""
    from gen3d_ros.bagmode import stage_from_params
    from gen3d_ros.io.transforms import invert_rigid, matrix_to_quaternion_xyzw

    kp_path = Path(__file__).resolve().parent / "models" / f"keypoints_{robot.name}.pt"
    if kp_path.is_file():
        # The full method from an unknown start: no encoder reading, no calibration. The packaged keypoint
        # network finds the arm in each frame, FK fitting gives joints + camera, Dr. Robot refines them.
        params: dict = {"urdf": "test_arm"}
    else:
        # Without a keypoint network: a calibrated camera and the joint state when the recording starts (the
        # first frame refines that reading, the rest track); from scratch the renderer alone is ambiguous.
        T_base_camera = invert_rigid(T_camera_base)
        params = {"urdf": "test_arm", "known_camera": True, "use_initial_joints": True,
                  "initial_joints": [float(v) for v in q_true[0]],
                  "camera_in_base": [*map(float, T_base_camera[:3, 3]),
                                     *map(float, matrix_to_quaternion_xyzw(T_base_camera[:3, :3]))]}
    stage, topics = stage_from_params("robot_pose", params)
    return stage, topics, _attach_keypoints(stage, kp_path)


def _attach_keypoints(stage: Any, kp_path: Path):
    """Give the stage's processor the packaged keypoint network (None when there is none)."""
    if not kp_path.is_file():
        return None
    from gen3d_ros.robot.keypoints.detector import KeypointDetector
    from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator

    # a CPU budget (make demo): each Adam step of the refinement splats 3k Gaussians (~0.15-0.25 s on one core),
    # so the first frame refines its hypotheses 15 steps and a tracked frame 2 (the GPU bench: 40 and 8)
    config = KeypointPoseConfig(refine=True, refine_iterations=15, track_refine_iterations=2)
    kpe = KeypointPoseEstimator(KeypointDetector.load(kp_path), stage.processor.estimator, config)
    stage.processor.keypoints = kpe
    return kpe


def _estimated_cameras(bag: Path, stamps: list[int], got: list[int]) -> list[np.ndarray]:
    """``T_camera_base`` per estimated frame from the bag's ``camera_pose`` (the camera in the base frame)."""
    from gen3d_ros.io.rosbag2 import read_messages
    from gen3d_ros.io.transforms import invert_rigid, pose_to_matrix

    by_stamp = {}
    for m in read_messages(bag, ["/robot_pose_node/camera_pose"]):
        s = m.msg.header.stamp
        by_stamp[s.sec * 10**9 + s.nanosec] = invert_rigid(pose_to_matrix(m.msg.pose))
    return [by_stamp[stamps[i]] for i in got]


def _add_cm(robot: Any, q_est: np.ndarray, T_est: list[np.ndarray], q_true: np.ndarray, T_true: np.ndarray) -> float:
    """Mean ADD (cm): link origins in the camera frame, estimate vs truth, averaged over the frames."""
    import torch

    from gen3d_ros.robot.kinematics import ForwardKinematics

    fk = ForwardKinematics(robot, dtype=torch.float64)
    with torch.no_grad():
        pe, pt = fk(torch.as_tensor(q_est))[..., :3, 3].numpy(), fk(torch.as_tensor(q_true))[..., :3, 3].numpy()
    ce = np.stack([p @ T[:3, :3].T + T[:3, 3] for p, T in zip(pe, T_est)])
    ct = pt @ T_true[:3, :3].T + T_true[:3, 3]
    return float(100 * np.linalg.norm(ce - ct, axis=-1).mean())


def _calibrate(work: Path, kpe: Any, video: list[np.ndarray], camera: Any, q_true: np.ndarray,
               T_camera_base: np.ndarray) -> dict[str, float]:
    """Camera-to-robot calibration from the video with the joint readings (what ``gen3d calibrate-camera`` does):
    ``calibration.json`` and its errors against the true camera."""
    from gen3d_ros.geometry.rotations import rotation_angle_between
    from gen3d_ros.robot.pose import pose_from_matrix

    import torch

    # keypoints + PnP per frame (no render-and-compare: its CPU cost per frame is the demo's whole budget)
    cal = kpe.calibrate(video, camera, q_true, refine=False)
    position, quaternion = pose_from_matrix(cal.T_base_camera)
    rot = float(np.degrees(rotation_angle_between(torch.as_tensor(cal.T_camera_base[:3, :3]),
                                                  torch.as_tensor(T_camera_base[:3, :3]))))
    out = {"translation_err_cm": float(100 * np.linalg.norm(cal.T_camera_base[:3, 3] - T_camera_base[:3, 3])),
           "rotation_err_deg": rot, "translation_std_cm": 100 * cal.translation_std_m,
           "rotation_std_deg": cal.rotation_std_deg, "frames_used": cal.frames_used, "frames": cal.frames}
    write_json(work / "calibration.json", {"camera_in_base": [*map(float, position), *map(float, quaternion)],
                                           "T_camera_base": cal.T_camera_base.tolist(), **out})
    return out
