"""Robot pose stage: ``sensor_msgs/Image`` + ``sensor_msgs/CameraInfo`` -> the robot's joint angles and the camera's
pose, by analysis-by-synthesis through the Dr. Robot renderer (:class:`gen3d_ros.robot.pose.RobotPoseProcessor`).

Inputs: ``image`` (rgb8/bgr8/rgba8/bgra8/mono8/16-bit colour; see :mod:`gen3d_ros.io.image`) and ``camera_info``;
an image is paired with the CameraInfo nearest in stamp within ``sync_tolerance`` (:mod:`gen3d_ros.pipeline.sync`),
whichever arrives first. Optional ``joint_readings`` ``sensor_msgs/JointState``, the encoders (default topic
``joint_states``; :mod:`gen3d_ros.pipeline.joint_readings`): names the URDF lacks are ignored, partial messages
merged per joint; when every actuated joint has a reading within ``joint_state_tolerance`` of an image's stamp, that
frame is in known-joints mode (the camera only: with ``keypoints``, keypoints + FK + PnP with RANSAC; without, the
Dr. Robot camera search); otherwise (none, stale, ``known_camera``) the joints are estimated as well.
Outputs, all with the image's ``header.stamp``:

- ``estimate`` ``gen3d_ros/RobotPoseEstimate``: header = the image's (camera optical frame), joints, the camera in
  the base frame, losses, iterations, hypotheses, convergence, latency, model id;
- ``joint_states`` ``sensor_msgs/JointState``: the estimated joints (names = the URDF's actuated joints);
- ``camera_pose`` ``geometry_msgs/PoseStamped``: ``header.frame_id = base_frame``, the pose of the camera optical
  frame in the base frame, ``T_base_camera`` (REP-103; the estimator works with its inverse ``T_camera_base``,
  which maps base-frame points into the OpenCV optical frame: x right, y down, z forward);
- ``camera_pose_with_covariance`` ``geometry_msgs/PoseWithCovarianceStamped``: the same pose with the covariance
  diag(``pose_std``^2) (zero with ``known_camera``), for robot_localization-style consumers;
- ``tf`` ``tf2_msgs/TFMessage``: only when ``publish_tf`` (off by default): one transform, parent ``base_frame`` ->
  child ``tf_child_frame`` (default ``<camera frame>_estimated``, the camera frame being the Image's
  ``header.frame_id`` or the ``camera_frame`` parameter), the same ``T_base_camera``. A new child frame keeps the
  TF tree a tree: the real camera frame usually has a parent already (a frame has one parent).

Calibrate mode (``mode: calibrate``, needs ``keypoints``): each frame with fresh joint readings gives a known-joints
camera (a frame waits for its readings, which travel on another topic; a newer frame replaces it); after
``calibrate_frames`` of them the average (rotation chordal mean, translation median, outliers by MAD left out;
:func:`~gen3d_ros.robot.keypoints.estimator.average_cameras`) is published once, latched (transient local):

- ``calibration`` ``geometry_msgs/PoseWithCovarianceStamped``: the camera optical frame in ``base_frame`` with the
  spread of the frames' estimates as covariance (:func:`calibration_covariance`);
- ``tf_static`` ``tf2_msgs/TFMessage`` on ``/tf_static``: ``base_frame`` -> ``tf_child_frame`` (default
  ``<camera frame>_estimated``), what ``tf2_ros.StaticTransformBroadcaster`` would send.

Later frames are ignored (``calibrated`` in the diagnostics); change a parameter to calibrate again. While
calibrating, the per-frame outputs go out as usual except ``tf`` (the static transform names the same child).

Tracking: with ``tracking`` on, each frame warm-starts from the previous estimates (a few Adam steps,
``estimator.track_iterations``); a from-scratch multi-hypothesis estimate runs on the first frame, after the
intrinsics change, when stamps go backwards or jump by more than ``max_tracking_gap``, and when the tracked loss
exceeds ``estimator.relocalize_loss``. ``known_camera`` fixes the camera to ``camera_in_base`` (a calibrated
camera): joints only.

Rejected with a reason (counted, never raised): unsupported encodings (e.g. 32FC1 depth), an image whose size
differs from its CameraInfo's, an uncalibrated or skewed K, distortion on an image not marked ``rectified``, NaN
intrinsics, no frame id for TF; a JointState whose names and positions differ in length, with repeated names, a zero
stamp or none of the robot's joints. A stage that cannot load its URDF or checkpoint fails to build with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.config import param, section, validate
from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.io.camera_info import camera_info_to_intrinsics
from gen3d_ros.io.image import image_to_rgb
from gen3d_ros.io.joint_state import joint_state_msg
from gen3d_ros.io.messages import MessageFactory, make_header, stamp_to_nanoseconds
from gen3d_ros.io.transforms import (check_rigid, invert_rigid, matrix_to_pose, pose_to_matrix, pose_stamped,
                                     tf_message, transform_stamped)
from gen3d_ros.pipeline.base import InputRejected, Output, Stage
from gen3d_ros.pipeline.joint_readings import JointReadings
from gen3d_ros.pipeline.robot_model import MODELS_DIR, check_robot_resources
from gen3d_ros.pipeline.sync import Paired, StampPairer
from gen3d_ros.robot.pose.config import PoseEstimatorConfig
from gen3d_ros.robot.splat_backends import BACKEND_CHOICES

log = logging.getLogger("gen3d_ros.pipeline.robot_pose")


@dataclass
class RobotPoseStageConfig:
    """Knobs of the robot pose stage; every field is also a ROS parameter of ``robot_pose_node``, and every field of
    the estimator's :class:`~gen3d_ros.robot.pose.PoseEstimatorConfig` one named ``estimator.<field>``
    (``estimator.search_size``) but ``device``, ``backend`` and ``seed``, which it shares with the stage."""

    urdf: str = param("", "robot description: a URDF path, 'test_arm' or an example-robot-data name (panda, ur5); "
                          "empty: the packaged test arm")
    checkpoint: str = param("", "Dr. Robot model (gen3d train-robot); empty: the packaged model of the robot if one "
                                "exists, else an untrained model built from the URDF (logged warning)")
    n_gaussians: int = param(2000, "Gaussians of the untrained fallback model", lo=100, hi=1_000_000)
    device: str = param("cpu", "torch device of the renderer (cpu, cuda, cuda:1)")
    backend: str = param("auto", "splatting backend: auto (gsplat on CUDA, else torch), torch, gsplat",
                         choices=BACKEND_CHOICES)
    threads: int = param(1, "torch CPU threads; 0: torch's default", lo=0, hi=256)
    max_image_side: int = param(160, "images with a longer side are downsampled to it (intrinsics scaled) before "
                                     "fitting; 0: full resolution", unit="px", lo=0, hi=8192)
    # A from-scratch estimate: a silhouette search (no rendering) over azimuths x elevations x joint_restarts, hill
    # climbing, base-yaw twins, render scoring, coarse-to-fine Adam; tracked frames: a few warm-started steps.
    estimator: PoseEstimatorConfig = section(PoseEstimatorConfig, "the pose estimator (hypotheses, pyramid, "
                                             "losses, tracking)", shared=("device", "backend", "seed"))
    tracking: bool = param(True, "warm-start each frame from the previous estimates")
    max_tracking_gap: float = param(1.0, "tracking: start over when consecutive stamps differ by more than this",
                                    unit="s", lo=0.0, hi=1e6)
    known_camera: bool = param(False, "the camera is calibrated: fix it to camera_in_base, estimate joints only")
    camera_in_base: list = param([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                 "known_camera: pose of the camera optical frame in the base frame, "
                                 "[x, y, z, qx, qy, qz, qw] (m, unit quaternion)")
    use_initial_joints: bool = param(False, "the first frame (and every tracking restart) refines initial_joints "
                                            "instead of searching from scratch")
    initial_joints: list = param([0.0], "use_initial_joints: joint values in URDF actuated-joint order, e.g. the "
                                        "encoders' reading when the camera starts", unit="rad")
    sync_tolerance: float = param(0.01, "largest stamp difference of an image and its CameraInfo", unit="s",
                                  lo=0.0, hi=10.0)
    rectified: bool = param(False, "the images are rectified (image_rect): use CameraInfo P, ignore D; off: K, "
                                   "and images with non-zero distortion are rejected")
    base_frame: str = param("", "TF frame of the robot base; empty: the URDF's root link")
    camera_frame: str = param("", "TF frame of the camera; empty: the Image's header.frame_id")
    publish_tf: bool = param(False, "publish base_frame -> tf_child_frame on the tf output (off: a robot's camera "
                                    "frame usually has a parent in TF already)")
    tf_child_frame: str = param("", "child frame of the published transform; empty: '<camera frame>_estimated', a "
                                    "new frame, so the TF tree stays a tree")
    pose_std: list = param([0.2, 0.2, 0.2, 0.7, 0.7, 0.7],
                           "standard deviations of the camera pose (x, y, z in metres, then roll, pitch, yaw in "
                           "radians) on camera_pose_with_covariance: the covariance diagonal is their squares (zero "
                           "with known_camera). Default: the median camera errors of the multi-hypothesis estimate "
                           "in bench/results/pose_estimation.json (panda: 19.6 cm, 40.6 deg)")
    seed: int = param(0, "random seed (joint restarts, hill climbing, untrained model)", lo=0, hi=2**31 - 1)
    keypoints: str = param("", "keypoint network (gen3d train-robot --stage keypoints): a path, or 'packaged' (the "
                               "package's gen3d_ros/models/keypoints_<robot>.pt); every frame then starts from the "
                               "learned keypoints (known joints: PnP + RANSAC for the camera; else an FK fit). Empty: "
                               "none, the Dr. Robot silhouette search alone")
    keypoint_refine: bool = param(False, "with keypoints: Dr. Robot render-and-compare refinement after the keypoint "
                                         "solution (off: on the test arm it made every mode worse)")
    mode: str = param("estimate", "estimate: joints + camera of every frame (the camera only while fresh "
                                  "joint_readings exist); calibrate: average calibrate_frames known-joints camera "
                                  "estimates, publish the static base_frame -> camera transform on /tf_static and "
                                  "~/calibration (latched), then ignore further frames. calibrate needs keypoints "
                                  "and joint_readings", choices=("estimate", "calibrate"))
    calibrate_frames: int = param(30, "calibrate: frames whose camera estimates are averaged (rotation mean, "
                                      "translation median, outliers left out)", lo=1, hi=100_000)
    joint_state_tolerance: float = param(0.1, "joint_readings: a JointState counts for an image when each joint's "
                                              "reading nearest in stamp is at most this far from the image's stamp; "
                                              "else the joints are estimated (calibrate: the frame is rejected)",
                                         unit="s", lo=0.0, hi=3600.0)

    def __post_init__(self) -> None:
        self.camera_in_base = [float(v) for v in self.camera_in_base]
        self.pose_std = [float(v) for v in self.pose_std]
        if len(self.pose_std) != 6 or not all(np.isfinite(v) and v >= 0.0 for v in self.pose_std):
            raise ValueError(f"pose_std must be 6 finite values >= 0 (x, y, z in m; roll, pitch, yaw in rad), got "
                             f"{self.pose_std}")
        if self.mode == "calibrate" and not self.keypoints:
            raise ValueError("mode 'calibrate' needs a keypoint network: set keypoints to 'packaged' or a path "
                             "(gen3d train-robot --stage keypoints)")
        if self.mode == "calibrate" and self.known_camera:
            raise ValueError("mode 'calibrate' estimates the camera: turn known_camera off")
        validate(self)
        self.T_base_camera_known()  # raises for a wrong length or a zero or non-finite quaternion

    def T_base_camera_known(self) -> np.ndarray:
        """``camera_in_base`` as a 4x4 ``T_base_camera`` (camera optical frame -> base frame, metres)."""
        return camera_in_base_matrix(self.camera_in_base, "RobotPoseStageConfig")

    def check_resources(self) -> None:
        """Without building the model: the URDF parses, the checkpoint (when given) is a Dr. Robot model of that
        URDF, the device exists (:func:`~gen3d_ros.pipeline.robot_model.check_robot_resources`). ValueError naming
        the field and the path otherwise."""
        check_robot_resources(self, "RobotPoseStageConfig")
        if self.keypoints:
            path = self.keypoint_path()
            if not path.is_file():
                raise ValueError(f"RobotPoseStageConfig.keypoints={self.keypoints!r}: {path} does not exist; train "
                                 "one (gen3d train-robot --stage keypoints) or leave it empty")

    def keypoint_path(self, robot_name: str | None = None) -> Path:
        """The keypoint network file of ``keypoints`` (``'packaged'``: ``gen3d_ros/models/keypoints_<robot>.pt``,
        the robot's name read from the URDF when not given)."""
        if self.keypoints != "packaged":
            return Path(self.keypoints).expanduser()
        if robot_name is None:
            from gen3d_ros.pipeline.robot_model import resolve_urdf
            from gen3d_ros.robot.urdf import load_urdf

            robot_name = load_urdf(resolve_urdf(self.urdf, "RobotPoseStageConfig")).name
        return MODELS_DIR / f"keypoints_{robot_name}.pt"


@dataclass
class _PoseView:
    """Duck-typed ``geometry_msgs/Pose`` over plain numbers (for :func:`pose_to_matrix`)."""

    x: float
    y: float
    z: float
    qx: float
    qy: float
    qz: float
    qw: float

    @property
    def position(self) -> Any:
        return _XYZW(self.x, self.y, self.z, 0.0)

    @property
    def orientation(self) -> Any:
        return _XYZW(self.qx, self.qy, self.qz, self.qw)


@dataclass
class _XYZW:
    x: float
    y: float
    z: float
    w: float


def camera_in_base_matrix(camera_in_base: list, owner: str) -> np.ndarray:
    """A config's ``camera_in_base`` ``[x, y, z, qx, qy, qz, qw]`` as a 4x4 ``T_base_camera`` (camera optical frame
    -> base frame, metres); ValueError naming ``<owner>.camera_in_base`` for a wrong length or a bad quaternion."""
    if len(camera_in_base) != 7:
        raise ValueError(f"{owner}.camera_in_base must be [x, y, z, qx, qy, qz, qw], got {camera_in_base}")
    try:
        return pose_to_matrix(_PoseView(*camera_in_base))
    except ValueError as exc:
        raise ValueError(f"{owner}.camera_in_base: {exc}") from None


def pinhole_from_camera_info(msg: Any, *, rectified: bool) -> PinholeCamera:
    """The :class:`~gen3d_ros.geometry.camera.PinholeCamera` of the image a ``CameraInfo`` describes: its
    intrinsics after ROI and binning (:func:`~gen3d_ros.io.camera_info.camera_info_to_intrinsics`; P when
    ``rectified``) through :meth:`PinholeCamera.from_camera_info` (principal point +0.5 px).

    Raises ValueError (the reason) for intrinsics the renderer cannot model: zero or non-finite focal lengths,
    skew, or distortion on a raw image.
    """
    intr = camera_info_to_intrinsics(msg, rectified=rectified)
    camera = PinholeCamera.from_camera_info(intr.K, intr.width, intr.height)
    if not rectified and intr.D.size and np.any(np.abs(intr.D) > 1e-12):
        raise ValueError(f"CameraInfo has {intr.distortion_model} distortion D={intr.D.tolist()}; feed the "
                         "rectified image (image_proc, image_rect) and set 'rectified: true'")
    return camera


def calibration_covariance(cal: Any) -> np.ndarray:
    """6x6 covariance (row-major x, y, z in m^2, then rotation about the base frame's x, y, z in rad^2) of
    ``T_base_camera`` over the frames a :class:`~gen3d_ros.robot.keypoints.estimator.Calibration` averaged: the
    spread of the single-frame estimates about the average (not the smaller uncertainty of the average itself;
    zero from one frame). Rotation deviations are the rotation vectors of ``R_i R_mean^T``."""
    from scipy.spatial.transform import Rotation

    per = np.asarray(cal.per_frame, np.float64)[np.asarray(cal.inliers, bool)]
    if len(per) < 2:
        return np.zeros((6, 6))
    T_mean = invert_rigid(cal.T_camera_base)
    T_frames = np.stack([invert_rigid(T) for T in per])  # T_base_camera of each frame
    dt = T_frames[:, :3, 3] - T_mean[:3, 3]
    dr = Rotation.from_matrix(T_frames[:, :3, :3] @ T_mean[:3, :3].T).as_rotvec()
    d = np.concatenate([dt, dr], axis=1)
    return d.T @ d / (len(d) - 1)


def resize_for_fitting(rgb: np.ndarray, camera: Any, max_side: int) -> tuple[np.ndarray, Any]:
    """``(rgb, camera)`` downsampled (area filter) so the longer side is at most ``max_side`` px (0: unchanged)."""
    import cv2

    side = max(camera.width, camera.height)
    if max_side <= 0 or side <= max_side:
        return rgb, camera
    small = camera.scaled(max_side / side)
    return cv2.resize(rgb, (small.width, small.height), interpolation=cv2.INTER_AREA), small


class RobotPoseStage(Stage):
    name = "robot_pose"
    inputs = {"image": "sensor_msgs/msg/Image", "camera_info": "sensor_msgs/msg/CameraInfo",
              "joint_readings": "sensor_msgs/msg/JointState"}
    outputs = {
        "estimate": "gen3d_ros/msg/RobotPoseEstimate",
        "joint_states": "sensor_msgs/msg/JointState",
        "camera_pose": "geometry_msgs/msg/PoseStamped",
        "camera_pose_with_covariance": "geometry_msgs/msg/PoseWithCovarianceStamped",
        "tf": "tf2_msgs/msg/TFMessage",
        "calibration": "geometry_msgs/msg/PoseWithCovarianceStamped",
        "tf_static": "tf2_msgs/msg/TFMessage",
    }
    # the encoders are optional: without them every frame estimates the joints too
    optional_inputs = frozenset({"joint_readings"})

    def __init__(self, config: RobotPoseStageConfig | None = None) -> None:
        """Loads the URDF and model: FileNotFoundError / ValueError with the reason when they cannot be used."""
        super().__init__()
        from gen3d_ros.pipeline.robot_model import load_stage_robot_model
        from gen3d_ros.robot.pose import RobotPoseProcessor

        self.config = config or RobotPoseStageConfig()
        c = self.config
        loaded = load_stage_robot_model(c)
        self.robot, self.model_id = loaded.robot, loaded.model_id
        self.base_frame = c.base_frame or self.robot.root
        known = invert_rigid(c.T_base_camera_known()) if c.known_camera else None
        initial = None
        if c.use_initial_joints:
            initial = np.asarray(c.initial_joints, dtype=np.float64)
            if initial.shape != (len(self.robot.actuated_joints),) or not np.isfinite(initial).all():
                raise ValueError(f"initial_joints must be {len(self.robot.actuated_joints)} finite values "
                                 f"({', '.join(self.robot.actuated_joints)}), got {c.initial_joints}")
        self.processor = RobotPoseProcessor(loaded.model, c.estimator, known_camera=known,
                                            initial_joints=initial)
        if c.keypoints:
            self.processor.keypoints = self._keypoint_estimator()
        if c.mode == "calibrate":
            self.processor.start_calibration(c.calibrate_frames)
        self.readings = JointReadings(self.processor.joint_names, c.joint_state_tolerance)
        self.calibration: Any = None  # the Calibration once calibrate mode has averaged its frames
        self._waiting: Paired | None = None  # calibrate mode: the newest frame, until its joint readings arrive
        self.pairer = StampPairer(c.sync_tolerance)
        self._last_stamp_ns: int | None = None

    def _keypoint_estimator(self) -> Any:
        """The :class:`~gen3d_ros.robot.keypoints.estimator.KeypointPoseEstimator` of ``keypoints`` on the
        processor's Dr. Robot estimator (its refinement). ValueError for a network of another robot."""
        from gen3d_ros.robot.keypoints.detector import KeypointDetector
        from gen3d_ros.robot.keypoints.estimator import KeypointPoseConfig, KeypointPoseEstimator

        path = self.config.keypoint_path(self.robot.name)
        if not path.is_file():
            raise FileNotFoundError(f"keypoint network {path} does not exist (keypoints={self.config.keypoints!r})")
        detector = KeypointDetector.load(path, self.config.device)
        return KeypointPoseEstimator(detector, self.processor.estimator,
                                     KeypointPoseConfig(refine=self.config.keypoint_refine))

    @property
    def joint_names(self) -> list[str]:
        """Joint order of the outputs: the URDF's actuated joints."""
        return self.processor.joint_names

    def handle(self, input_name: str, msg: Any, factory: MessageFactory) -> list[Output]:
        if input_name == "joint_readings":
            try:
                self.stats.extra["joint_readings_used"] = float(self.readings.add(msg))
            except ValueError as exc:
                raise InputRejected(f"unusable JointState: {exc}") from exc
            waiting, self._waiting = self._waiting, None
            return [] if waiting is None else self._estimate(waiting, factory)
        if input_name == "camera_info":
            pair = self.pairer.add_info(msg)
        else:
            pair = self.pairer.add_image(msg)
        self.stats.extra["sync_dropped"] = float(self.pairer.dropped)
        self.stats.extra["sync_expired"] = float(self.pairer.expired)
        if pair is None:
            return []  # waiting for the other half of the pair: not a frame yet
        return self._estimate(pair, factory)

    def _estimate(self, pair: Paired, factory: MessageFactory) -> list[Output]:
        c = self.config
        image = pair.image
        self._waiting = None  # a newer frame replaces one still waiting for its joints
        if self.calibration is not None:
            return []  # calibrate mode is done: its result stays latched on tf_static and calibration
        stamp_ns = stamp_to_nanoseconds(image.header.stamp)
        q_known = self._joint_readings_at(stamp_ns)
        if q_known is None and c.mode == "calibrate":
            # A frame is no use to the calibration without its joints, which travel on another topic and may come
            # later: the newest frame waits for them (retried on each JointState; a newer frame replaces it).
            self._waiting = pair
            return []
        try:
            camera = pinhole_from_camera_info(pair.info, rectified=c.rectified)
        except ValueError as exc:
            raise InputRejected(f"unusable CameraInfo: {exc}") from exc
        if (int(image.width), int(image.height)) != (camera.width, camera.height):
            raise InputRejected(f"Image is {image.width}x{image.height} but its CameraInfo describes "
                                f"{camera.width}x{camera.height} (after ROI/binning); they must match")
        try:
            rgb = image_to_rgb(image)
        except ValueError as exc:
            raise InputRejected(f"unusable Image: {exc}") from exc
        camera_frame = c.camera_frame or str(image.header.frame_id)
        if c.publish_tf and not camera_frame:
            raise InputRejected("Image has an empty header.frame_id and the camera_frame parameter is empty: no "
                                "frame to publish the camera pose on TF")
        if camera_frame == self.base_frame:
            raise InputRejected(f"camera frame and base frame are both {camera_frame!r}")
        rgb, fit_camera = resize_for_fitting(rgb, camera, c.max_image_side)

        self.processor.set_known_joints(q_known)
        if q_known is not None and c.mode == "calibrate":
            self.stats.extra["calibration_frames"] = self.stats.extra.get("calibration_frames", 0.0) + 1.0
        if not c.tracking:
            self.processor.reset()
        elif self._last_stamp_ns is not None and (
                stamp_ns < self._last_stamp_ns or (stamp_ns - self._last_stamp_ns) * 1e-9 > c.max_tracking_gap):
            self.processor.reset()  # a bag restarted or frames were lost: the previous pose is no prior any more
        self._last_stamp_ns = stamp_ns
        result = self.processor.process(rgb, fit_camera, stamp=stamp_ns * 1e-9)
        est = result.estimate
        if not (np.isfinite(est.q).all() and np.isfinite(est.T_camera_base).all()):
            self.processor.reset()
            raise RuntimeError(f"pose estimate is not finite (q={est.q.tolist()}); tracking reset")
        self.stats.extra["loss"] = float(est.loss)
        self.stats.extra["tracked"] = float(result.tracked)
        self.stats.extra["pair_skew_ms"] = pair.skew_s * 1e3
        outputs = self._frame_outputs(result, image.header, camera_frame, factory)
        if result.calibration is not None:
            outputs += self._calibration_outputs(result.calibration, image.header.stamp, camera_frame, factory)
        return outputs

    def _joint_readings_at(self, stamp_ns: int) -> np.ndarray | None:
        """The encoders' joints ``[J]`` at ``stamp_ns`` when fresh (this frame then estimates the camera only), else
        None (the joints are estimated too; with ``known_camera`` the readings are not used: nothing to solve)."""
        q, why = (None, "known_camera") if self.config.known_camera else self.readings.at(stamp_ns)
        self.stats.extra["known_joints"] = float(q is not None)
        self.stats.extra["waiting_for_joints"] = float(q is None and self.config.mode == "calibrate")
        if q is None:
            log.debug("frame at %d ns without joint readings: %s", stamp_ns, why)
        return q

    def _frame_outputs(self, result: Any, image_header: Any, camera_frame: str, factory: MessageFactory
                       ) -> list[Output]:
        """One frame's estimate, joint_states, camera_pose(+covariance) and (``publish_tf``, not while
        calibrating: the static transform names the same child frame) tf, all with the image's stamp."""
        c, est = self.config, result.estimate
        T_base_camera = invert_rigid(check_rigid(est.T_camera_base, "estimated T_camera_base"))
        header = make_header(factory, image_header)
        stamp = image_header.stamp
        joints = joint_state_msg(est.joint_names, est.q, factory, header=make_header(factory, stamp=stamp))
        terms = est.loss_terms
        outputs = [
            Output("estimate", factory.new(
                "gen3d_ros/msg/RobotPoseEstimate", header=header, joints=joints,
                camera_in_base=matrix_to_pose(T_base_camera, factory), base_frame=self.base_frame,
                photometric_loss=float(terms.get("rgb", est.loss)), silhouette_loss=float(terms.get("mask", 0.0)),
                iterations=int(est.iterations), hypotheses=int(est.hypotheses), converged=bool(est.converged),
                latency_ms=float(result.latency_s * 1e3), model_id=self.model_id)),
            Output("joint_states", joints),
            Output("camera_pose", pose_stamped(T_base_camera, factory, frame_id=self.base_frame,
                                               stamp=stamp)),
        ]
        outputs.append(Output("camera_pose_with_covariance", self._pose_with_covariance(T_base_camera, factory,
                                                                                    stamp)))
        if c.publish_tf and c.mode != "calibrate":
            outputs.append(Output("tf", tf_message([transform_stamped(
                T_base_camera, factory, parent_frame=self.base_frame,
                child_frame=c.tf_child_frame or f"{camera_frame}_estimated", stamp=stamp)], factory)))
        return outputs

    def _calibration_outputs(self, cal: Any, stamp: Any, camera_frame: str, factory: MessageFactory
                             ) -> list[Output]:
        """Calibrate mode's result, once: ``calibration`` (PoseWithCovarianceStamped of the camera optical frame
        in ``base_frame``, covariance = the spread of the frames' estimates, :func:`calibration_covariance`) and
        ``tf_static`` (``base_frame`` -> ``tf_child_frame`` or ``<camera frame>_estimated``), both latched."""
        self.calibration = cal
        T_base_camera = invert_rigid(check_rigid(cal.T_camera_base, "calibrated T_camera_base"))
        self.stats.extra["calibrated"] = 1.0
        self.stats.extra["calibration_translation_std_cm"] = 100.0 * cal.translation_std_m
        self.stats.extra["calibration_rotation_std_deg"] = cal.rotation_std_deg
        self.stats.extra["calibration_frames_used"] = float(cal.frames_used)
        log.info("calibrated the camera from %d of %d frames: spread %.2f cm / %.2f deg", cal.frames_used,
                 cal.frames, 100.0 * cal.translation_std_m, cal.rotation_std_deg)
        pose = factory.new("geometry_msgs/msg/PoseWithCovarianceStamped",
                           header=make_header(factory, frame_id=self.base_frame, stamp=stamp),
                           pose=factory.new("geometry_msgs/msg/PoseWithCovariance",
                                            pose=matrix_to_pose(T_base_camera, factory),
                                            covariance=calibration_covariance(cal).ravel()))
        child = self.config.tf_child_frame or f"{camera_frame}_estimated"
        tf = tf_message([transform_stamped(T_base_camera, factory, parent_frame=self.base_frame, child_frame=child,
                                           stamp=stamp)], factory)
        return [Output("calibration", pose), Output("tf_static", tf)]

    def _pose_with_covariance(self, T_base_camera: np.ndarray, factory: MessageFactory, stamp: Any) -> Any:
        """``PoseWithCovarianceStamped`` of the camera in ``base_frame``: covariance diag(``pose_std``^2) (6x6
        row-major: x, y, z, rotation about x, y, z), zero with ``known_camera`` (the given calibration)."""
        std = np.zeros(6) if self.config.known_camera else np.asarray(self.config.pose_std, np.float64)
        covariance = np.diag(std ** 2).ravel()  # float64[36]: numpy for either message world
        return factory.new("geometry_msgs/msg/PoseWithCovarianceStamped",
                           header=make_header(factory, frame_id=self.base_frame, stamp=stamp),
                           pose=factory.new("geometry_msgs/msg/PoseWithCovariance",
                                            pose=matrix_to_pose(T_base_camera, factory), covariance=covariance))
