"""What a pose estimate is asked to do (:class:`PoseEstimatorConfig`) and what it returns (:class:`PoseEstimate`).

Every field of :class:`PoseEstimatorConfig` carries its parameter metadata (default, unit, range, description;
:func:`gen3d_ros.config.param`), so a ROS node can declare ``estimator.<field>`` parameters straight from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gen3d_ros.config import param, validate
from gen3d_ros.geometry.rigid import invert_rigid, matrix_to_quaternion_xyzw
from gen3d_ros.robot.splat_backends import BACKEND_CHOICES

MODES = ("full", "known_camera", "known_joints")


@dataclass
class PoseEstimatorConfig:
    """Settings of :class:`~gen3d_ros.robot.pose.estimator.PoseEstimator` (validated on construction).

    Hypotheses (the global search, see :meth:`PoseEstimator.estimate`): camera rotations (``azimuths`` x
    ``elevations_deg``, upright cameras looking at the posed robot's centre) x joint hypotheses (the neutral pose
    plus ``joint_restarts - 1`` scrambled-Sobol samples within the limits); each pair's camera translation is
    solved in closed form from the mask and scored at ``search_size`` px by the IoU of projected surface points
    (``search_points``) with the mask plus their distance outside it (no rendering). The best ``search_climbers``
    (diverse) hill-climb that score (``search_rounds`` x ``search_perturbations``, step sizes halving per round),
    the best ``search_keep`` (near-duplicates within ``search_nms_m`` suppressed) are expanded into
    ``yaw_offsets`` base-yaw twins (root joint and camera turned together: the silhouette can't tell them apart,
    appearance can), scored by rendering at the first pyramid level, and the best ``keep[0]`` are optimised.
    With a known camera: ``joint_restarts x azimuths x len(elevations_deg)`` joint samples, ``known_camera_*``.

    Schedule: ``pyramid_scales`` (``PinholeCamera.scaled`` factors, ending at 1), ``iterations`` Adam steps and
    ``keep`` hypotheses (non-increasing) per level. Adam step sizes are roughly the per-step change of each
    quantity; each level's rates decay exponentially to ``lr_decay`` of the start. Loss terms are per-pixel means
    (resolution independent). A level stops when the best loss improved by less than ``tolerance`` (relative)
    over ``patience`` steps. Video (:meth:`PoseEstimator.track`): ``track_iterations`` steps per frame at
    ``track_scale`` with rates times ``track_lr_scale`` (Adam's first steps are ~lr in every parameter at once,
    too much for a warm start within a few degrees), from the previous estimate (extrapolated when
    ``constant_velocity``), with smoothness penalties; a frame whose loss exceeds ``relocalize_loss`` is
    re-estimated from scratch.
    """

    azimuths: int = param(16, "camera azimuth hypotheses, evenly spaced over 360 deg about the base z axis", lo=1, hi=256)
    elevations_deg: tuple[float, ...] = param((0.0, 20.0, 40.0, 60.0), "camera elevation hypotheses above the base "
                                              "xy plane (upright cameras looking at the posed robot's centre)",
                                              unit="deg")
    joint_restarts: int = param(128, "joint hypotheses: the neutral pose plus Sobol samples within the limits, "
                                     "paired with every camera rotation", lo=1, hi=1_000_000)
    search_size: int = param(64, "longer side of the silhouette search's images", unit="px", lo=4, hi=1024)
    search_points: int = param(1024, "robot surface points per hypothesis in the silhouette search", lo=1, hi=1_000_000)
    search_keep: int = param(8, "hypotheses kept from the silhouette search (near-duplicates suppressed)", lo=1, hi=1024)
    search_nms_m: float = param(0.03, "hypotheses whose camera-frame link origins are closer than this (mean) to "
                                      "a better one are dropped", unit="m", lo=0.0)
    search_climbers: int = param(16, "best (diverse) hypotheses that hill-climb the silhouette score", lo=1, hi=1024)
    search_rounds: int = param(6, "hill-climbing rounds (step sizes halve per round); 0: no hill climbing", lo=0, hi=100)
    search_perturbations: int = param(16, "random perturbations per climber per round", lo=1, hi=1024)
    yaw_offsets: int = param(4, "base-yaw twins per kept hypothesis (known camera: twins of the distal joint); "
                                "1: off", lo=1)
    known_camera_climbers: int = param(64, "known camera: hypotheses that hill-climb the silhouette score", lo=1, hi=1024)
    known_camera_keep: int = param(12, "known camera: hypotheses kept from the silhouette search", lo=1, hi=1024)
    pyramid_scales: tuple[float, ...] = param((0.5, 1.0), "image scales of the coarse-to-fine levels, in (0, 1], "
                                                          "ending at 1")
    iterations: tuple[int, ...] = param((30, 40), "Adam steps per pyramid level")
    keep: tuple[int, ...] = param((3, 1), "hypotheses optimised at each pyramid level (non-increasing)")
    lr_joints: float = param(0.1, "Adam step of the joints (sigmoid-logit units; 0.1 moves a mid-range joint by "
                                  "~2.5 % of its range); > 0", lo=0.0)
    lr_rotation: float = param(0.03, "Adam step of the camera rotation; > 0", unit="rad", lo=0.0)
    lr_translation: float = param(0.01, "Adam step of the camera translation; > 0", unit="m", lo=0.0)
    lr_decay: float = param(0.05, "each level's rates decay exponentially to this fraction by its last step, in "
                                  "(0, 1]", lo=0.0, hi=1.0)
    w_rgb: float = param(1.0, "weight of the photometric L1 loss (RGB in [0, 1])", lo=0.0)
    w_mask: float = param(1.0, "weight of the silhouette L2 loss (rendered alpha vs mask)", lo=0.0)
    w_outside: float = param(1.0, "weight of the outside-silhouette loss (alpha x distance to the mask in image "
                                  "widths)", lo=0.0)
    tolerance: float = param(1e-3, "a level stops when the best loss improved less than this (relative) over "
                                   "'patience' steps", lo=0.0)
    patience: int = param(8, "steps of the convergence test", lo=1, hi=10_000)
    track_iterations: int = param(12, "Adam steps of a tracked video frame", lo=0, hi=10_000)
    track_scale: float = param(1.0, "image scale of a tracked frame, in (0, 1]", lo=0.0, hi=1.0)
    track_lr_scale: float = param(0.3, "learning-rate factor of a tracked frame; > 0", lo=0.0)
    constant_velocity: bool = param(True, "tracking: extrapolate the joints at constant velocity")
    w_smooth_joints: float = param(0.01, "tracking: penalty per rad^2 of joint change between frames", lo=0.0)
    w_smooth_camera: float = param(0.01, "tracking: penalty per rad^2 / m^2 of camera change between frames",
                                   lo=0.0)
    relocalize_loss: float = param(float("inf"), "tracking: re-estimate from scratch when a tracked frame's loss "
                                                 "exceeds this (inf: never)")
    background: tuple[float, float, float] = param((1.0, 1.0, 1.0), "RGB in [0, 1] behind the robot (the "
                                                                    "ground-truth renderer's is white)")
    mask_threshold: float = param(0.1, "without a mask, pixels differing from 'background' by more than this in "
                                       "any channel are the robot (RGB in [0, 1])")
    device: str = param("cpu", "torch device of the renderer (cpu, cuda, cuda:1)")
    backend: str = param("auto", "splatting backend: auto (gsplat on CUDA, else torch), torch, gsplat",
                         choices=BACKEND_CHOICES)
    seed: int = param(0, "random seed (joint restarts, hill climbing)")

    def __post_init__(self) -> None:
        self.elevations_deg = tuple(float(v) for v in self.elevations_deg)
        self.pyramid_scales = tuple(float(v) for v in self.pyramid_scales)
        self.iterations = tuple(int(v) for v in self.iterations)
        self.keep = tuple(int(v) for v in self.keep)
        self.background = tuple(float(c) for c in self.background)  # type: ignore[assignment]
        validate(self)
        self._check_schedule()
        if not self.elevations_deg or not all(-90.0 <= e <= 90.0 for e in self.elevations_deg):
            raise ValueError(f"elevations_deg must be one or more angles in [-90, 90] deg, got {self.elevations_deg}")
        if min(self.lr_joints, self.lr_rotation, self.lr_translation) <= 0 or not 0.0 < self.lr_decay <= 1.0:
            raise ValueError("learning rates must be positive and lr_decay in (0, 1]")
        if self.track_lr_scale <= 0:
            raise ValueError(f"track_lr_scale must be positive, got {self.track_lr_scale}")
        if not 0.0 < self.track_scale <= 1.0:
            raise ValueError(f"track_scale must be in (0, 1], got {self.track_scale}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")

    def _check_schedule(self) -> None:
        """The pyramid: ``pyramid_scales``, ``iterations`` and ``keep`` of one non-zero length, scales in (0, 1],
        keep non-increasing, iterations >= 0."""
        n = len(self.pyramid_scales)
        if n == 0 or len(self.iterations) != n or len(self.keep) != n:
            raise ValueError(
                f"pyramid_scales, iterations and keep need the same non-zero length, got {self.pyramid_scales}, "
                f"{self.iterations}, {self.keep}"
            )
        if any(not 0.0 < s <= 1.0 for s in self.pyramid_scales):
            raise ValueError(f"pyramid_scales must be in (0, 1], got {self.pyramid_scales}")
        if any(k < 1 for k in self.keep) or any(b > a for a, b in zip(self.keep, self.keep[1:])):
            raise ValueError(f"keep must be >= 1 and non-increasing, got {self.keep}")
        if any(i < 0 for i in self.iterations):
            raise ValueError(f"iterations must be >= 0, got {self.iterations}, track {self.track_iterations}")

    @property
    def num_hypotheses(self) -> int:
        """Initial hypotheses of a full estimate: azimuths x elevations x joint restarts."""
        return self.azimuths * len(self.elevations_deg) * self.joint_restarts


@dataclass
class PoseEstimate:
    """One pose estimate.

    ``q`` [J] radians / metres (order ``joint_names``); ``T_camera_base`` [4, 4] base -> OpenCV camera, metres;
    ``loss``: the final total loss (dimensionless, lower is better; at the finest level); ``iterations``: Adam
    steps summed over hypotheses and levels; ``converged``: the last level met the tolerance; ``seconds``: wall
    time; ``loss_terms``: the final loss split into its weighted terms; ``hypotheses``: initial hypotheses;
    ``phase_seconds``: wall time of each phase of a single-image estimate (``target``, ``search``, ``score``,
    ``level0``, ...; measured where the estimate waits for the device anyway), empty for a tracked frame.
    """

    q: np.ndarray
    T_camera_base: np.ndarray
    loss: float
    iterations: int
    converged: bool
    seconds: float
    joint_names: list[str]
    loss_terms: dict[str, float] = field(default_factory=dict)
    hypotheses: int = 1
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def T_base_camera(self) -> np.ndarray:
        """The camera's pose in the base frame (4x4), e.g. for ``geometry_msgs/Pose camera_in_base``."""
        return invert_rigid(self.T_camera_base)


def pose_from_matrix(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position [3] metres, quaternion [4] x, y, z, w)`` of a rigid 4x4 transform, ready for ``geometry_msgs/Pose``."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), matrix_to_quaternion_xyzw(T[:3, :3])


__all__ = ["MODES", "PoseEstimate", "PoseEstimatorConfig", "pose_from_matrix"]
