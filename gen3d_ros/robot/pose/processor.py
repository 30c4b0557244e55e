"""``RobotPoseProcessor``: per-frame robot pose estimation with tracking state, what the ROS node and bag mode call.

No rclpy: images are numpy arrays, stamps plain numbers, results plain data (:class:`RobotPoseResult`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig
from gen3d_ros.robot.pose.estimator import PoseEstimator


@dataclass
class RobotPoseResult:
    """What :meth:`RobotPoseProcessor.process` returns for one image.

    ``estimate``: the pose (see :class:`PoseEstimate`; ``estimate.T_base_camera`` is the camera in the base frame);
    ``stamp``: the input's stamp, unchanged (seconds or whatever the caller passed); ``latency_s``: wall time of
    this call; ``tracked``: True when warm-started from the previous frame, False for a from-scratch estimate
    (first frame, after :meth:`RobotPoseProcessor.reset`, or a relocalisation).
    """

    estimate: PoseEstimate
    stamp: float | None
    latency_s: float
    tracked: bool
    calibration: Any = None
    """In calibrate mode, once ``calibrate_frames`` frames were seen: the
    :class:`~gen3d_ros.robot.keypoints.estimator.Calibration` (static ``T_camera_base`` with its spread); else None."""


INITIAL_REFINE_ITERATIONS = 60
"""Adam steps that refine ``initial_joints`` on the first frame (a tracked frame takes ``track_iterations``)."""


class RobotPoseProcessor:
    """Pure (no rclpy) per-frame pose estimation with tracking state, for the robot pose node and bag mode.

        processor = RobotPoseProcessor(RobotGaussianModel.load(path), PoseEstimatorConfig(device="cuda"))
        result = processor.process(rgb_uint8, camera, stamp=msg_stamp_seconds)
        result.estimate.q, result.estimate.joint_names         # -> sensor_msgs/JointState
        pose_from_matrix(result.estimate.T_base_camera)         # -> geometry_msgs/Pose camera_in_base
        result.estimate.loss, .iterations, .converged           # -> RobotPoseEstimate fields

    The first image (and the first after :meth:`reset`, a camera-intrinsics change or a tracking loss above
    ``config.relocalize_loss``) runs a full multi-hypothesis estimate; later images warm-start from the
    previous estimates; with ``initial_joints`` (``q`` [J], e.g. the encoders' reading when the video starts)
    such a first image refines that guess (joints-only with a known camera; with the search as a fallback
    otherwise) instead of searching from scratch. ``known_camera`` (``T_camera_base`` 4x4) switches to joints-only estimation (a
    calibrated camera); ``known_joints`` (``q`` [J], e.g. from ``/joint_states``) to camera-only estimation
    (hand-eye calibration); set them at construction or with :meth:`set_known_camera` / :meth:`set_known_joints`.
    With ``keypoints`` (a :class:`~gen3d_ros.robot.keypoints.estimator.KeypointPoseEstimator`) every frame
    starts from the learned keypoints instead (see :meth:`_process_keypoints`), and ``calibrate_frames`` > 0 with
    known joints is the calibrate mode (:meth:`start_calibration`). Not thread-safe: call from one worker thread.
    """

    def __init__(
        self,
        model,
        config: PoseEstimatorConfig | None = None,
        known_camera: np.ndarray | None = None,
        known_joints: np.ndarray | None = None,
        initial_joints: np.ndarray | None = None,
        keypoints: Any = None,
        calibrate_frames: int = 0,
    ) -> None:
        if calibrate_frames < 0:
            raise ValueError(f"calibrate_frames must be >= 0, got {calibrate_frames}")
        self.estimator = PoseEstimator(model, config)
        self.keypoints = keypoints
        self.calibrate_frames = int(calibrate_frames)
        self.calibration: Any = None
        self._calibration_frames: list[np.ndarray] = []
        self.initial_joints = None if initial_joints is None else np.asarray(initial_joints, dtype=np.float64)
        self.known_camera = None if known_camera is None else np.asarray(known_camera, dtype=np.float64)
        self.known_joints = None if known_joints is None else np.asarray(known_joints, dtype=np.float64)
        self._history: list[PoseEstimate] = []
        self._camera: PinholeCamera | None = None

    @property
    def joint_names(self) -> list[str]:
        """Joint order of every ``estimate.q``."""
        return self.estimator.joint_names

    @property
    def tracking(self) -> bool:
        """Whether the next :meth:`process` warm-starts from the previous frame."""
        return bool(self._history)

    def reset(self) -> None:
        """Forget the tracking state: the next image is estimated from scratch."""
        self._history.clear()

    def set_known_camera(self, T_camera_base: np.ndarray | None) -> None:
        """Fix the camera (4x4 base -> OpenCV camera, metres), or None to estimate it again; resets tracking."""
        self.known_camera = None if T_camera_base is None else np.asarray(T_camera_base, dtype=np.float64)
        self.reset()

    def set_known_joints(self, q: np.ndarray | None) -> None:
        """Fix the joints (``[J]`` in :attr:`joint_names` order) for camera-only estimation, or None."""
        self.known_joints = None if q is None else np.asarray(q, dtype=np.float64)

    def process(
        self,
        image: np.ndarray,
        camera: PinholeCamera,
        stamp: float | None = None,
        mask: np.ndarray | None = None,
    ) -> RobotPoseResult:
        """Estimate the robot's joints and the camera pose in ``image`` (``[H, W, 3]`` uint8 RGB, or float 0..1).

        ``camera``: the image's intrinsics; ``stamp`` is passed through; ``mask`` ``[H, W]`` optional robot mask.
        """
        t0 = time.perf_counter()
        if camera != self._camera:
            self.reset()
            self._camera = camera
        est_ = self.estimator
        if self.keypoints is not None:
            est, tracked = self._process_keypoints(image, camera)
        elif self.known_joints is not None:
            # Camera-only: joints come from the robot; warm-start the camera from the last estimate.
            if self._history:
                est = est_.refine(image, camera, self.known_joints, self._history[-1].T_camera_base, mask=mask,
                                  optimise_q=False)
                tracked = est.loss <= est_.config.relocalize_loss
                if not tracked:
                    est = est_.estimate(image, camera, mask=mask, q=self.known_joints)
            else:
                est, tracked = est_.estimate(image, camera, mask=mask, q=self.known_joints), False
        elif not self._history and self.initial_joints is not None:
            if self.known_camera is not None:
                # a reading, not a previous frame: a full-step refinement, longer than a tracking step
                est = est_.refine(image, camera, self.initial_joints, self.known_camera, mask=mask, optimise_T=False,
                                  iterations=INITIAL_REFINE_ITERATIONS, lr_scale=1.0)
            else:
                est = est_.estimate(image, camera, mask=mask, q_init=self.initial_joints)
            tracked = False
        else:
            tracked = bool(self._history)
            est = est_.track_step(image, camera, self._history[-2:], mask=mask, T_camera_base=self.known_camera)
            tracked = tracked and est.hypotheses == 1
        self._history = (self._history + [est])[-2:]
        return RobotPoseResult(estimate=est, stamp=stamp, latency_s=time.perf_counter() - t0, tracked=tracked,
                               calibration=self.calibration)

    def _process_keypoints(self, image: np.ndarray, camera: PinholeCamera) -> tuple[PoseEstimate, bool]:
        """The keypoint path (``keypoints``: a :class:`~gen3d_ros.robot.keypoints.estimator.KeypointPoseEstimator`):
        known joints -> the camera (PnP + refinement; in calibrate mode averaged over ``calibrate_frames`` frames,
        after which the average is the known camera); otherwise tracking re-anchored on each frame's keypoints."""
        kp = self.keypoints
        if self.known_joints is not None:
            est = kp.estimate(image, camera, q=self.known_joints)
            if self.calibrate_frames and self.calibration is None:
                from gen3d_ros.robot.keypoints.estimator import average_cameras

                self._calibration_frames.append(est.T_camera_base)
                if len(self._calibration_frames) >= self.calibrate_frames:
                    self.calibration = average_cameras(np.stack(self._calibration_frames))
                    self.known_camera = self.calibration.T_camera_base
            return est, False
        previous = self._history[-1] if self._history else None
        est = kp.track_step(image, camera, previous, T_camera_base=self.known_camera)
        return est, previous is not None and est.hypotheses == 1

    def start_calibration(self, frames: int) -> None:
        """Calibrate mode: average the known-joints camera estimates of the next ``frames`` frames (needs
        ``keypoints`` and :meth:`set_known_joints` before each frame); the result is ``RobotPoseResult.calibration``."""
        if self.keypoints is None:
            raise ValueError("calibration needs a keypoint network (RobotPoseProcessor(keypoints=...))")
        if frames < 1:
            raise ValueError(f"calibration needs >= 1 frame, got {frames}")
        self.calibrate_frames, self.calibration = int(frames), None
        self._calibration_frames.clear()


__all__ = ["INITIAL_REFINE_ITERATIONS", "RobotPoseProcessor", "RobotPoseResult"]
