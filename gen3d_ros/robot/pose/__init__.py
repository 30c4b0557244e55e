"""Robot pose and camera estimation from images by analysis-by-synthesis through the differentiable renderer.

    model = RobotGaussianModel.load("drrobot.pt")          # or RobotGaussianModel.from_robot(robot)
    estimator = PoseEstimator(model, PoseEstimatorConfig())
    est = estimator.estimate(rgb, camera)                   # joints + T_camera_base from one image
    est = estimator.estimate(rgb, camera, T_camera_base=T)  # known camera: joints only
    est = estimator.estimate(rgb, camera, q=q)              # known joints: camera only (hand-eye calibration)
    track = estimator.track(frames, camera)                 # video: warm start + temporal smoothness

    processor = RobotPoseProcessor(model)                   # what the ROS node calls, frame by frame
    result = processor.process(image_uint8, camera, stamp)  # RobotPoseResult (estimate, latency, tracking state)

Frames and units: ``q`` in radians (revolute) / metres (prismatic), order ``model.fk.joint_names``;
``T_camera_base`` (4x4) maps base-frame points to the OpenCV optical frame of the camera (x right, y down,
z forward), metres; images ``[H, W, 3]`` RGB (uint8 0..255 or float 0..1), masks ``[H, W]`` (robot = 1).

Modules, in the order an estimate uses them:

- :mod:`~.config`: :class:`PoseEstimatorConfig` (every field with its parameter metadata), :class:`PoseEstimate`.
- :mod:`~.images`: target tensors, masks from the background colour, pyramids, distance-to-silhouette maps.
- :mod:`~.surface`: robot surface samples posed by forward kinematics (the search's points, the camera pivot).
- :mod:`~.search`: the silhouette search, which renders nothing: closed-form camera translation from the mask's
  box, an IoU + outside-distance score of projected points, hill climbing, near-duplicate suppression.
- :mod:`~.hypotheses`: camera rotations x Sobol joint samples, and the twins the silhouette can't tell apart.
- :mod:`~.losses`: photometric L1 + silhouette L2 + outside term; temporal smoothness.
- :mod:`~.refine`: Adam on the sigmoid joint / pivot-camera parametrisation, coarse-to-fine.
- :mod:`~.tracking`: video frames warm-started from the previous estimates.
- :mod:`~.estimator`: :class:`PoseEstimator`, composing the above; :mod:`~.processor`: :class:`RobotPoseProcessor`.
- :mod:`~.timing`: frames/s of tracking, seconds of an estimate and the op counts behind them (benchmarks).
"""

from importlib import import_module
from typing import Any

from gen3d_ros.robot.pose.config import MODES, PoseEstimate, PoseEstimatorConfig, pose_from_matrix

# The estimator side imports torch; the config side does not. A node declares its estimator.* parameters from
# PoseEstimatorConfig before it loads anything, so those names are loaded on first use (PEP 562).
_LAZY = {"PoseEstimator": "estimator", "image_to_tensor": "images", "mask_from_background": "images",
         "image_loss_terms": "losses", "INITIAL_REFINE_ITERATIONS": "processor", "RobotPoseProcessor": "processor",
         "RobotPoseResult": "processor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["INITIAL_REFINE_ITERATIONS", "MODES", "PoseEstimate", "PoseEstimator", "PoseEstimatorConfig",
           "RobotPoseProcessor", "RobotPoseResult", "image_loss_terms", "image_to_tensor", "mask_from_background",
           "pose_from_matrix"]
