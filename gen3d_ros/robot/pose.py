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

Method. Joints are ``q = lower + (upper - lower) sigmoid(z)`` (limits by construction) and the camera is an
axis-angle increment on a base rotation about the robot's centre plus that centre's camera-frame position
(:mod:`gen3d_ros.robot.parametrization`). The loss is photometric L1 on RGB + silhouette L2 (rendered alpha vs
mask) + an "outside" term (alpha times the distance to the target silhouette, which pulls stray parts back in
from afar, where the L2 terms have no gradient). Local minima are escaped with a global search that renders
nothing: camera azimuths x elevations (rotations) x Sobol joint samples, each pair's camera translation solved in
closed form from the mask's bounding box, scored by the IoU of projected surface points with the mask; the best
(diverse) hill-climb that score, the kept few are expanded into base-yaw twins, rendered once at the coarsest
pyramid level, and the best are optimised coarse-to-fine (``PinholeCamera.scaled`` renders of an area-downsampled
target), pruned by loss after each level; the answer is the lowest full-resolution loss after refinement. A given
pose (``q_init`` with a known camera) is never pruned: it is refined to the end beside the search's best.
Adam, one learning rate per quantity.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gen3d_ros.geometry.rigid import invert_rigid, matrix_to_quaternion_xyzw
from gen3d_ros.geometry.camera import PinholeCamera, sphere_camera
from gen3d_ros.robot.meshes import sample_surface
from gen3d_ros.robot.parametrization import (
    CameraPoseParam,
    joints_from_unconstrained,
    unconstrained_from_joints,
)

MODES = ("full", "known_camera", "known_joints")


# ------------------------------------------------------------------------------------------------ config / results


@dataclass
class PoseEstimatorConfig:
    """Settings of :class:`PoseEstimator` (validated on construction).

    Hypotheses (the global search, see :meth:`PoseEstimator.estimate`):
        azimuths: camera azimuth hypotheses, evenly spaced over 360 deg about the base z axis.
        elevations_deg: camera elevation hypotheses above the base xy plane (degrees); cameras are upright (no
            roll), each looking at the posed robot's centre.
        joint_restarts: joint hypotheses: the neutral pose plus ``joint_restarts - 1`` scrambled-Sobol samples
            within the limits (more even than uniform random draws). Every joint hypothesis is paired with every
            camera rotation; the camera translation of each pair is solved in closed form from the mask. With a
            known camera, ``joint_restarts x azimuths x len(elevations_deg)`` joint samples (the same budget).
        search_size: pixel size (longer side) of the silhouette search: every pair is scored there by the IoU
            of its projected surface points with the mask plus their distance outside it (no rendering).
        search_points: surface points per hypothesis in that search.
        search_keep: hypotheses kept from the silhouette search (the best, after suppressing near-duplicates
            whose camera-frame link origins lie within ``search_nms_m`` metres (mean) of a better one).
        yaw_offsets: each kept hypothesis is expanded into this many variants that turn the root joint (base yaw)
            and the camera about that joint's axis together by multiples of 360 deg / ``yaw_offsets``: the
            moving links look the same from the camera, only the base differs, so the silhouette can't tell them
            apart but appearance can (1 = no expansion; ignored for robots without a revolute root joint).
        search_climbers, search_rounds, search_perturbations: before keeping, the best ``search_climbers``
            (diverse) hill-climb the silhouette score: ``search_rounds`` rounds of ``search_perturbations`` random
            perturbations each, step sizes halving per round (0 rounds: off).
        The ``search_keep x yaw_offsets`` candidates are scored by rendering at the first pyramid level; the
        best ``keep[0]`` are optimised.
    Schedule:
        pyramid_scales: image scales of the coarse-to-fine levels (``PinholeCamera.scaled`` factors, ending at 1).
        iterations: Adam steps per pyramid level (same length as ``pyramid_scales``).
        keep: hypotheses optimised at each level (non-increasing); the rest are pruned by loss first.
    Optimiser (Adam; step sizes are roughly the per-step change of each quantity):
        lr_joints: in sigmoid-logit units (a step of 0.1 moves a mid-range joint by ~2.5 % of its range).
        lr_rotation: radians. lr_translation: metres. lr_decay: each level's rates decay exponentially to this
            fraction of the start by its last step.
    Loss weights (all terms are per-pixel means, so they don't depend on the resolution):
        w_rgb: photometric L1 on RGB in [0, 1]. w_mask: L2 of rendered alpha vs mask.
        w_outside: alpha times the distance (in image widths) to the target silhouette.
    Convergence: a level stops when the best loss improved by less than ``tolerance`` (relative) over the last
        ``patience`` steps; ``converged`` reports whether the last level stopped that way.
    Video (:meth:`PoseEstimator.track`): ``track_iterations`` steps per frame at ``track_scale`` with the learning
        rates times ``track_lr_scale`` (Adam's first steps are ~lr in every parameter at once, too much for a
        warm start that is already within a few degrees), starting from the
        previous frame's estimate (extrapolated at constant velocity when ``constant_velocity``), with smoothness
        penalties ``w_smooth_joints`` per rad^2 of joint change and ``w_smooth_camera`` per rad^2 / m^2 of camera
        change; a frame whose loss exceeds ``relocalize_loss`` is re-estimated from scratch.
    Rendering: ``background`` RGB in [0, 1] behind the robot (the ground-truth renderer's is white);
        ``mask_threshold``: when no mask is given, pixels differing from ``background`` by more than this in any
        channel are the robot. ``device`` and ``backend`` (``"auto"``, ``"torch"``, ``"gsplat"``) of the renderer.
    seed: joint restarts.
    """

    azimuths: int = 16
    elevations_deg: tuple[float, ...] = (0.0, 20.0, 40.0, 60.0)
    joint_restarts: int = 128
    search_size: int = 64
    search_points: int = 1024
    search_keep: int = 8
    search_nms_m: float = 0.03
    search_climbers: int = 16
    search_rounds: int = 6
    search_perturbations: int = 16
    yaw_offsets: int = 4
    known_camera_climbers: int = 64
    known_camera_keep: int = 12
    pyramid_scales: tuple[float, ...] = (0.5, 1.0)
    iterations: tuple[int, ...] = (30, 40)
    keep: tuple[int, ...] = (3, 1)
    lr_joints: float = 0.1
    lr_rotation: float = 0.03
    lr_translation: float = 0.01
    lr_decay: float = 0.05
    w_rgb: float = 1.0
    w_mask: float = 1.0
    w_outside: float = 1.0
    tolerance: float = 1e-3
    patience: int = 8
    track_iterations: int = 12
    track_scale: float = 1.0
    track_lr_scale: float = 0.3
    constant_velocity: bool = True
    w_smooth_joints: float = 0.01
    w_smooth_camera: float = 0.01
    relocalize_loss: float = float("inf")
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mask_threshold: float = 0.1
    device: str = "cpu"
    backend: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
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
        if any(i < 0 for i in self.iterations) or self.track_iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}, track {self.track_iterations}")
        if self.azimuths < 1 or not self.elevations_deg or self.joint_restarts < 1:
            raise ValueError(
                f"need azimuths >= 1, elevations and joint_restarts >= 1, got {self.azimuths}, "
                f"{self.elevations_deg}, {self.joint_restarts}"
            )
        if self.search_size < 4 or self.search_points < 1 or self.search_keep < 1 or self.yaw_offsets < 1:
            raise ValueError(
                f"need search_size >= 4, search_points >= 1, search_keep >= 1 and yaw_offsets >= 1, got "
                f"{self.search_size}, {self.search_points}, {self.search_keep}, {self.yaw_offsets}"
            )
        if min(self.lr_joints, self.lr_rotation, self.lr_translation) <= 0 or not 0.0 < self.lr_decay <= 1.0:
            raise ValueError("learning rates must be positive and lr_decay in (0, 1]")
        if min(self.w_rgb, self.w_mask, self.w_outside, self.w_smooth_joints, self.w_smooth_camera) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.track_lr_scale <= 0:
            raise ValueError(f"track_lr_scale must be positive, got {self.track_lr_scale}")
        if not 0.0 < self.track_scale <= 1.0:
            raise ValueError(f"track_scale must be in (0, 1], got {self.track_scale}")
        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")

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
    time; ``loss_terms``: the final loss split into its weighted terms; ``hypotheses``: initial hypotheses.
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

    @property
    def T_base_camera(self) -> np.ndarray:
        """The camera's pose in the base frame (4x4), e.g. for ``geometry_msgs/Pose camera_in_base``."""
        return invert_rigid(self.T_camera_base)


def pose_from_matrix(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position [3] metres, quaternion [4] x, y, z, w)`` of a rigid 4x4 transform, ready for ``geometry_msgs/Pose``."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), matrix_to_quaternion_xyzw(T[:3, :3])


# ------------------------------------------------------------------------------------------------ targets


@dataclass
class _Level:
    """The target at one pyramid level: camera, RGB [h, w, 3], mask [h, w] and outside-distance [h, w]."""

    camera: PinholeCamera
    rgb: Tensor
    mask: Tensor
    outside: Tensor


def image_to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """``[H, W, 3]`` float32 in [0, 1] from uint8 (0..255) or float (0..1) RGB."""
    t = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    return t.float()


def mask_from_background(rgb: Tensor, background: Sequence[float], threshold: float) -> Tensor:
    """``[H, W]`` float mask of pixels whose colour differs from ``background`` by more than ``threshold``."""
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return ((rgb - bg).abs().amax(dim=-1) > threshold).to(rgb.dtype)


def _outside_distance(mask: Tensor) -> Tensor:
    """Euclidean distance (in image widths) from each pixel to the nearest mask pixel; 0 inside the mask."""
    from scipy.ndimage import distance_transform_edt

    m = mask.detach().cpu().numpy() > 0.5
    if not m.any():  # nothing to pull towards: the term is switched off
        return torch.zeros_like(mask)
    dist = distance_transform_edt(~m) / max(mask.shape)
    return torch.as_tensor(dist, dtype=mask.dtype, device=mask.device)


def _downsample(image: Tensor, height: int, width: int) -> Tensor:
    """Area-average ``[H, W, C]`` or ``[H, W]`` to ``[height, width, ...]`` (anti-aliased, for pyramids)."""
    squeeze = image.ndim == 2
    x = (image[..., None] if squeeze else image).permute(2, 0, 1)[None]
    if x.shape[-2:] != (height, width):
        x = F.adaptive_avg_pool2d(x, (height, width))
    out = x[0].permute(1, 2, 0)
    return out[..., 0] if squeeze else out


def _dilate3(x: Tensor) -> Tensor:
    """3x3 max filter of ``[B, H, W]`` (no padding beyond the image): ``F.max_pool2d(x, 3, 1, 1)`` as two
    separable passes of shifted maxima, the same values ~3x faster on CPU."""
    y = x.clone()
    y[..., 1:] = torch.maximum(y[..., 1:], x[..., :-1])
    y[..., :-1] = torch.maximum(y[..., :-1], x[..., 1:])
    z = y.clone()
    z[..., 1:, :] = torch.maximum(z[..., 1:, :], y[..., :-1, :])
    z[..., :-1, :] = torch.maximum(z[..., :-1, :], y[..., 1:, :])
    return z


def _hull_points(pts: Tensor) -> Tensor:
    """``[Q, K, 3]``: the convex-hull vertices of each point set ``pts [Q, P, 3]`` (padded by repeating one).

    Every bounding box :meth:`PoseEstimator._fit_translation` measures (orthographic extents, depth, perspective
    pixel extremes of points in front of the camera) is attained at a hull vertex, so the fit is the same on the
    ~10x fewer hull points. A degenerate (flat) set keeps all its points.
    """
    from scipy.spatial import ConvexHull, QhullError

    arr = pts.detach().cpu().double().numpy()
    index = []
    for p in arr:
        try:
            index.append(ConvexHull(p).vertices)
        except (QhullError, ValueError):
            index.append(np.arange(len(p)))
    k = max(len(i) for i in index)
    padded = np.stack([np.concatenate([i, np.full(k - len(i), i[0])]) for i in index])
    idx = torch.as_tensor(padded, dtype=torch.long, device=pts.device)
    return torch.gather(pts, 1, idx[..., None].expand(-1, -1, 3))


def _make_level(rgb: Tensor, mask: Tensor, camera: PinholeCamera, scale: float) -> _Level:
    cam = camera.scaled(scale) if scale != 1.0 else camera
    rgb_s = _downsample(rgb, cam.height, cam.width)
    mask_s = _downsample(mask, cam.height, cam.width)
    return _Level(cam, rgb_s, mask_s, _outside_distance(mask_s))


# ------------------------------------------------------------------------------------------------ losses


def image_loss_terms(
    rgb: Tensor, alpha: Tensor, level: _Level, w_rgb: float, w_mask: float, w_outside: float
) -> dict[str, Tensor]:
    """Weighted per-hypothesis loss terms ``{name: [B]}`` of renders ``rgb [B, h, w, 3]``, ``alpha [B, h, w]``."""
    return {
        "rgb": w_rgb * (rgb - level.rgb).abs().mean(dim=(-1, -2, -3)),
        "mask": w_mask * (alpha - level.mask).square().mean(dim=(-1, -2)),
        "outside": w_outside * (alpha * level.outside).mean(dim=(-1, -2)),
    }


# ------------------------------------------------------------------------------------------------ the estimator


@dataclass
class _State:
    """A batch of hypotheses being optimised (only the free parts get an optimiser)."""

    z: Tensor  # [B, J] joint logits
    cam: CameraPoseParam


class PoseEstimator:
    """Joint angles and camera pose of a robot from RGB images, through a differentiable robot renderer.

    ``model`` is a :class:`~gen3d_ros.robot.gaussians.RobotGaussianModel` (trained, or untrained from the URDF);
    anything with ``render(q, T_camera_base, camera, background, backend)``, ``fk`` and ``robot`` works. The
    model's parameters are frozen here (``requires_grad_(False)``): only the pose is optimised.
    """

    def __init__(self, model, config: PoseEstimatorConfig | None = None) -> None:
        self.config = config or PoseEstimatorConfig()
        from gen3d_ros.devices import check_device

        self.device = torch.device(check_device(self.config.device))
        self.model = model.to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.fk = model.fk
        self.joint_names: list[str] = list(self.fk.joint_names)
        self.lower = self.fk.lower.to(self.device)
        self.upper = self.fk.upper.to(self.device)
        self.background = torch.tensor(self.config.background, dtype=torch.float32, device=self.device)
        # Link-frame surface points for the mask-moment camera initialisation (cheaper than rendering).
        # (surface samples are i.i.d., so any prefix is itself a uniform sample: the pivot uses 512, the search more)
        samples = sample_surface(model.robot, max(512, self.config.search_points), np.random.default_rng(0))
        self._points = torch.as_tensor(samples.points, dtype=torch.float32, device=self.device)
        self._point_link = torch.as_tensor(samples.link_index, device=self.device)
        self._generator = torch.Generator().manual_seed(self.config.seed)

    # -------------------------------------------------------------------------------------- public API

    def estimate(
        self,
        image: np.ndarray | Tensor,
        camera: PinholeCamera,
        mask: np.ndarray | Tensor | None = None,
        q: np.ndarray | Tensor | None = None,
        T_camera_base: np.ndarray | Tensor | None = None,
        q_init: np.ndarray | Tensor | None = None,
    ) -> PoseEstimate:
        """Estimate from one image ``[H, W, 3]`` RGB seen by ``camera`` (intrinsics of that image).

        Modes follow from what is known: nothing -> joints and camera; ``T_camera_base`` [4, 4] -> joints only
        (known camera); ``q`` [J] -> camera only (known joints: hand-eye calibration); both -> just scored.
        ``mask`` [H, W] (robot = 1); when None it is estimated from ``config.background``. ``q_init`` [J]: an
        extra joint hypothesis (e.g. the last known joint state).
        """
        t0 = time.perf_counter()
        cfg = self.config
        rgb, mask_t = self._target(image, mask, camera)
        levels = [_make_level(rgb, mask_t, camera, s) for s in cfg.pyramid_scales]
        known_T = None if T_camera_base is None else self._tensor(T_camera_base).reshape(4, 4)
        known_q = None if q is None else self._tensor(q).reshape(self.fk.num_joints)
        q_hyp, T_hyp, n_searched, n_given = self._hypotheses(rgb, mask_t, camera, known_q, known_T, q_init)
        state = self._make_state(q_hyp, T_hyp)
        n_hyp = q_hyp.shape[0]
        # The first n_given hypotheses are given poses (q_init with a known camera): they are refined to the end
        # whatever their coarse rank (a nearby guess often scores worse than a search result before refinement,
        # and better after it), on top of the ``keep`` best.
        given = torch.arange(n_hyp) < n_given

        total_iters, converged = 0, False
        best_loss = torch.full((n_hyp,), float("inf"))
        for li, (level, iters, keep) in enumerate(zip(levels, cfg.iterations, cfg.keep)):
            if state.z.shape[0] > keep:
                scores = best_loss if li > 0 else self._score(state, level)
                order = torch.argsort(scores)[:keep]
                extra = given.nonzero()[:, 0]
                extra = extra[~torch.isin(extra, order)]
                order = torch.cat([order, extra])
                state = self._select(state, order)
                given = given[order]
                best_loss = best_loss[order] if li > 0 else scores[order]
            state, best_loss, used, converged = self._optimise(
                state, level, iters, optimise_q=known_q is None, optimise_T=known_T is None
            )
            total_iters += used * state.z.shape[0]
        # the answer: the lowest loss after refinement at the last (finest) level, over every refined candidate
        best = int(torch.argmin(best_loss))
        state = self._select(state, torch.tensor([best]))
        return self._result(state, levels[-1], total_iters, converged, time.perf_counter() - t0, n_searched)

    def refine(
        self,
        image: np.ndarray | Tensor,
        camera: PinholeCamera,
        q_init: np.ndarray | Tensor,
        T_init: np.ndarray | Tensor,
        mask: np.ndarray | Tensor | None = None,
        iterations: int | None = None,
        scale: float | None = None,
        prior: tuple[np.ndarray | Tensor, np.ndarray | Tensor] | None = None,
        optimise_q: bool = True,
        optimise_T: bool = True,
        lr_scale: float | None = None,
    ) -> PoseEstimate:
        """Local refinement of one hypothesis (``q_init`` [J], ``T_init`` [4, 4]): the tracking step.

        ``prior = (q_prev, T_prev)`` adds the temporal smoothness penalties (weights from the config) towards it.
        ``iterations`` / ``scale`` / ``lr_scale`` default to ``config.track_iterations`` / ``track_scale`` /
        ``track_lr_scale``.
        """
        t0 = time.perf_counter()
        cfg = self.config
        rgb, mask_t = self._target(image, mask, camera)
        level = _make_level(rgb, mask_t, camera, cfg.track_scale if scale is None else scale)
        q0 = self._tensor(q_init).reshape(1, -1)
        T0 = self._tensor(T_init).reshape(1, 4, 4)
        state = self._make_state(q0, T0)
        prior_t = None
        if prior is not None:
            q_prev = self._tensor(prior[0]).reshape(1, -1)
            T_prev = self._tensor(prior[1]).reshape(1, 4, 4)
            # Where the previous pose put the pivot, in camera coordinates: the reference for translation smoothness.
            t_prev = (T_prev[:, :3, :3] @ state.cam.pivot[:, :, None])[..., 0] + T_prev[:, :3, 3]
            prior_t = (q_prev, T_prev[:, :3, :3], t_prev)
        iters = cfg.track_iterations if iterations is None else iterations
        state, _, used, converged = self._optimise(state, level, iters, optimise_q, optimise_T, prior=prior_t,
                                                   lr_scale=cfg.track_lr_scale if lr_scale is None else lr_scale)
        return self._result(state, level, used, converged, time.perf_counter() - t0, 1)

    def track(
        self,
        frames: Sequence[np.ndarray | Tensor],
        camera: PinholeCamera,
        masks: Sequence[np.ndarray | Tensor | None] | None = None,
        initial: PoseEstimate | None = None,
        T_camera_base: np.ndarray | Tensor | None = None,
    ) -> list[PoseEstimate]:
        """Per-frame estimates of a video ``frames`` (each ``[H, W, 3]``): the first by :meth:`estimate` (unless
        ``initial`` is given), the rest by :meth:`refine` warm-started from the previous estimate with the
        smoothness prior. ``T_camera_base`` fixes a known, static camera. Each estimate's ``seconds`` is that
        frame's latency.
        """
        masks = list(masks) if masks is not None else [None] * len(frames)
        if len(masks) != len(frames):
            raise ValueError(f"got {len(frames)} frames but {len(masks)} masks")
        out: list[PoseEstimate] = []
        for frame, mask in zip(frames, masks):
            out.append(self.track_step(frame, camera, out[-2:] if out else ([initial] if initial else []),
                                       mask=mask, T_camera_base=T_camera_base))
        return out

    def track_step(
        self,
        image: np.ndarray | Tensor,
        camera: PinholeCamera,
        history: Sequence[PoseEstimate],
        mask: np.ndarray | Tensor | None = None,
        T_camera_base: np.ndarray | Tensor | None = None,
    ) -> PoseEstimate:
        """One video frame given the previous estimates ``history`` (oldest first; empty: estimate from scratch)."""
        cfg = self.config
        if not history:
            return self.estimate(image, camera, mask=mask, T_camera_base=T_camera_base)
        t0 = time.perf_counter()
        prev = history[-1]
        q_init = prev.q
        if cfg.constant_velocity and len(history) >= 2:
            # Constant-velocity prediction; clamped since the logit parametrisation can't start outside the limits.
            q_pred = torch.as_tensor(prev.q + (prev.q - history[-2].q), dtype=torch.float32)
            q_init = torch.minimum(torch.maximum(q_pred, self.lower.cpu()), self.upper.cpu()).numpy()
        T_init = prev.T_camera_base if T_camera_base is None else T_camera_base
        est = self.refine(image, camera, q_init, T_init, mask=mask, prior=(prev.q, T_init),
                          optimise_T=T_camera_base is None)
        if est.loss > cfg.relocalize_loss:  # lost: start over from the hypotheses
            est = self.estimate(image, camera, mask=mask, T_camera_base=T_camera_base, q_init=prev.q)
        return replace(est, seconds=time.perf_counter() - t0)

    def render(self, q: np.ndarray | Tensor, T_camera_base: np.ndarray | Tensor, camera: PinholeCamera):
        """The model's render (no gradients) at ``q`` [J] from ``T_camera_base`` [4, 4] on the configured background."""
        with torch.no_grad():
            return self.model.render(self._tensor(q), self._tensor(T_camera_base), camera,
                                     background=self.background, backend=self.config.backend)

    # -------------------------------------------------------------------------------------- internals

    def _tensor(self, x: np.ndarray | Tensor) -> Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32).to(self.device)

    def _target(self, image, mask, camera: PinholeCamera) -> tuple[Tensor, Tensor]:
        rgb = image_to_tensor(image).to(self.device)
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but the camera is {camera.width}x{camera.height}; "
                "pass the intrinsics of this image (PinholeCamera.scaled for resized images)"
            )
        if mask is None:
            mask_t = mask_from_background(rgb, self.config.background, self.config.mask_threshold)
        else:
            mask_t = self._tensor(mask).reshape(rgb.shape[:2])
        return rgb, mask_t

    def _pivot(self, q: Tensor) -> Tensor:
        """``[B, 3]`` centroid of the posed surface points (base frame, metres): the camera's rotation pivot."""
        return self._posed_points(q, 512).mean(dim=1)

    def _posed_points(self, q: Tensor, n: int | None = None) -> Tensor:
        """``[B, P, 3]`` surface points (base frame, metres) posed at ``q [B, J]``; the first ``n`` samples only."""
        pts, link = (self._points, self._point_link) if n is None else (self._points[:n], self._point_link[:n])
        T = self.fk(q)[:, link]  # [B, P, 4, 4]
        return (T[..., :3, :3] @ pts[None, :, :, None])[..., 0] + T[..., :3, 3]

    def _hypotheses(
        self, rgb: Tensor, mask: Tensor, camera: PinholeCamera, known_q: Tensor | None, known_T: Tensor | None,
        q_init: Tensor | None,
    ) -> tuple[Tensor, Tensor, int, int]:
        """Initial ``(q [B, J], T_camera_base [B, 4, 4], hypotheses searched, n_given)`` for the estimate's mode;
        the first ``n_given`` hypotheses are given poses that :meth:`estimate` must not prune."""
        cfg = self.config
        if known_q is not None:
            qs = known_q[None]
        else:
            extra = [self._tensor(q_init).reshape(1, -1)] if q_init is not None else []
            # Known camera: spend the full mode's budget (joints x rotations) on joint samples alone.
            n = cfg.joint_restarts * (1 if known_T is None else cfg.azimuths * len(cfg.elevations_deg))
            qs = torch.cat([self.fk.neutral()[None].to(self.device), *extra, self._joint_samples(n - 1)])
        if known_T is not None:
            R = known_T[None, :3, :3]
        else:
            rotations = [sphere_camera(2.0 * math.pi * a / cfg.azimuths, math.radians(e), 1.0)[:3, :3]
                         for e in cfg.elevations_deg for a in range(cfg.azimuths)]
            R = torch.as_tensor(np.stack(rotations), dtype=torch.float32, device=self.device)  # [V, 3, 3]
        if qs.shape[0] * R.shape[0] == 1:  # one hypothesis: nothing to search
            T = known_T[None] if known_T is not None else self._fit_translation(self._posed_points(qs), R, camera, mask)
            return qs, T, 1, 0
        q_best, T_best = self._silhouette_search(qs, R, known_T, camera, mask)
        if known_T is not None and known_q is None:
            q_best, T_best = self._distal_variants(q_best, T_best)
        n_given = 0
        if q_init is not None and known_T is not None and known_q is None:
            # a given guess (e.g. the last joint state) always competes, first, and is refined to the end
            # (estimate() never prunes it): the coarse scores may rank it below search results that it beats
            # once refined
            q_best = torch.cat([self._tensor(q_init).reshape(1, -1), q_best])
            T_best = torch.cat([known_T[None], T_best])
            n_given = 1
        if known_q is None and known_T is None:
            q_best, T_best = self._yaw_variants(q_best, T_best)
        return q_best, T_best, qs.shape[0] * R.shape[0], n_given

    def _joint_samples(self, n: int) -> Tensor:
        """``n`` joint configurations ``[n, J]`` within the limits: scrambled Sobol points (seeded by ``config.seed``).

        Low-discrepancy rather than i.i.d. uniform: with ~100 samples in 4-6 dimensions, random draws leave large
        holes that the local optimiser then has to cross.
        """
        if n <= 0:
            return torch.empty(0, self.fk.num_joints, device=self.device)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self._generator))
        u = torch.quasirandom.SobolEngine(self.fk.num_joints, scramble=True, seed=seed).draw(n).to(self.device)
        return self.lower + u.float() * (self.upper - self.lower)

    def _silhouette_search(
        self, qs: Tensor, R: Tensor, known_T: Tensor | None, camera: PinholeCamera, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The best ``search_keep`` (joint, camera) hypotheses of :meth:`_silhouette_scores`, near-duplicates
        suppressed so that the kept few differ."""
        cfg = self.config
        q, T, score = self._silhouette_scores(qs, R, known_T, camera, mask)
        known = known_T is not None
        climbers = cfg.known_camera_climbers if known else cfg.search_climbers
        if cfg.search_rounds > 0:
            # hill-climb the best few (diverse) before choosing: the grid alone is too coarse to find the basin
            q, T, score = self._suppress_duplicates(q, T, score, climbers, return_score=True)
            q, T, score = self._local_search(q, T, score, camera, mask, optimise_q=qs.shape[0] > 1,
                                             optimise_T=known_T is None)
        return self._suppress_duplicates(q, T, score, cfg.known_camera_keep if known else cfg.search_keep)

    def _search_target(
        self, camera: PinholeCamera, mask: Tensor, known_camera: bool = False
    ) -> tuple[PinholeCamera, Tensor, Tensor]:
        """``(camera, mask [h*w], outside distance [h*w])`` at the search resolution (``config.search_size``).

        ``known_camera``: the IoU mask is dilated by one pixel (3x3), like the points' 3x3 splats. With the camera
        fixed the scale can't adapt, so the undilated mask scores the true pose's ~1 px fatter splat silhouette
        poorly (IoU ~0.56 on the thin test arm at 64 px) and favours poses that fold or foreshorten links to
        shrink the splats: measured, the truth scored worse than ~10-200 wrong grid samples. Dilating both makes
        the truth the best (~0.13-0.19). (The full mode keeps the undilated mask: there the distance is fitted
        from the box, and a fatter mask favoured too-large hypotheses.)"""
        factor = min(1.0, self.config.search_size / max(camera.width, camera.height))
        cam = camera.scaled(factor) if factor < 1.0 else camera
        # Threshold 0.5 of the area-averaged mask: the renders' soft edges make masks ~1 px fatter than the surface
        # the points sample; a lower threshold (or dilating the mask) measurably favoured too-large hypotheses.
        m_bin = (_downsample(mask, cam.height, cam.width) > 0.5).to(mask.dtype)
        if m_bin.sum() < 1:
            raise ValueError("the robot mask is empty: nothing to fit (check the image, mask or background colour)")
        m_iou = _dilate3(m_bin[None])[0] if known_camera else m_bin
        return cam, m_iou.flatten(), _outside_distance(m_bin).flatten()

    def _point_score(self, pts: Tensor, T: Tensor, target: tuple[PinholeCamera, Tensor, Tensor]) -> Tensor:
        """Silhouette score ``[B]`` (lower is better) of posed points ``pts [B, P, 3]`` (base frame) seen from
        ``T [B, 4, 4]``: ``1 - IoU`` of the points splatted to 3x3 pixel blocks with the mask, plus the points'
        mean distance outside the mask (image widths; off-image or behind the camera counts as 1)."""
        cam, m_flat, dist = target
        p_cam = torch.baddbmm(T[:, None, :3, 3], pts, T[:, :3, :3].transpose(1, 2))  # one bmm, not B*P tiny matmuls
        z = p_cam[..., 2]
        zc = z.clamp_min(1e-3)
        u = torch.floor(cam.fx * p_cam[..., 0] / zc + cam.cx).long()
        v = torch.floor(cam.fy * p_cam[..., 1] / zc + cam.cy).long()
        valid = (z > 1e-3) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        flat = v.clamp(0, cam.height - 1) * cam.width + u.clamp(0, cam.width - 1)
        outside = torch.where(valid, dist[flat], torch.ones_like(zc)).mean(-1)
        occ = torch.zeros(pts.shape[0], cam.height * cam.width, dtype=pts.dtype, device=pts.device)
        occ.scatter_(1, flat, valid.to(occ.dtype))  # a point per pixel is enough (value 1 either way)
        # 3x3 splats: 1000 points leave holes in a 32 px silhouette, and a Gaussian covers more than its centre
        occ = _dilate3(occ.view(-1, cam.height, cam.width)).flatten(1)
        inter = occ @ m_flat
        union = occ.sum(-1) + m_flat.sum() - inter
        return 1.0 - inter / union.clamp_min(1.0) + outside

    @torch.no_grad()
    def _silhouette_scores(
        self, qs: Tensor, R: Tensor, known_T: Tensor | None, camera: PinholeCamera, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(q [B, J], T_camera_base [B, 4, 4], score [B])`` of every (joint hypothesis, camera rotation) pair,
        without rendering (lower is better; :meth:`_point_score` at ``search_size`` pixels: coarse, which widens
        the basins, and ~1000x cheaper than a render). Each pair's translation comes from :meth:`_fit_translation`
        (``known_T``: used as is)."""
        cfg = self.config
        target = self._search_target(camera, mask, known_camera=known_T is not None)
        pts_all = self._posed_points(qs, cfg.search_points)  # [Q, P, 3] base frame
        n_q, n_r, P = qs.shape[0], R.shape[0], pts_all.shape[1]
        if known_T is None:  # the translation fit only needs the hull (the same boxes), and the pivot
            hull_all, pivot_all = _hull_points(pts_all), pts_all.mean(dim=1)
        chunk_q = max(1, 400_000 // (n_r * P))  # bounds memory: ~400k points per chunk
        scores, Ts = [], []
        for start in range(0, n_q, chunk_q):
            pts = pts_all[start:start + chunk_q]
            pts_b = pts.repeat_interleave(n_r, dim=0)  # [c * V, P, 3]
            R_b = R.repeat(pts.shape[0], 1, 1)
            T = known_T.expand(pts_b.shape[0], 4, 4) if known_T is not None else self._fit_translation(
                hull_all[start:start + chunk_q].repeat_interleave(n_r, dim=0), R_b, camera, mask,
                pivot=pivot_all[start:start + chunk_q].repeat_interleave(n_r, dim=0))
            scores.append(self._point_score(pts_b, T, target))
            Ts.append(T.clone())
        return qs.repeat_interleave(n_r, dim=0), torch.cat(Ts), torch.cat(scores)

    @torch.no_grad()
    def _local_search(
        self, q: Tensor, T: Tensor, score: Tensor, camera: PinholeCamera, mask: Tensor, optimise_q: bool,
        optimise_T: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stochastic hill climbing of :meth:`_point_score` from each hypothesis ``(q [B, J], T [B, 4, 4])``.

        ``search_rounds`` rounds of ``search_perturbations`` Gaussian perturbations per hypothesis (joints: a
        fraction of their range; camera: rotation about the robot's centre, rad, and that centre's camera-frame
        position, m, depth relative), shrinking each round; a hypothesis moves to its best perturbation when that
        scores better. Cheap (no rendering) and derivative-free, so it crosses the plateaus of the coarse
        silhouette score that stop gradient steps, and closes the gaps of the sampling grid.
        """
        cfg = self.config
        from gen3d_ros.geometry.rotations import so3_exp

        target = self._search_target(camera, mask, known_camera=not optimise_T)
        B, M, J = q.shape[0], cfg.search_perturbations, q.shape[1]
        span = (self.upper - self.lower)
        gen = self._generator
        for r in range(cfg.search_rounds):
            f = 0.5 ** r  # step sizes halve every round
            qb = q.repeat_interleave(M, 0)
            Tb = T.repeat_interleave(M, 0).clone()
            if optimise_q:
                dq = torch.randn(qb.shape, generator=gen).to(qb) * (0.1 * f) * span
                qb = torch.minimum(torch.maximum(qb + dq, self.lower), self.upper)
            pts = self._posed_points(qb, cfg.search_points)
            if optimise_T:
                # = self._pivot(qb) (the first 512 samples), without a second FK when the search has them
                pivot = pts[:, :512].mean(dim=1) if pts.shape[1] >= 512 else self._pivot(qb)
                t_c = (Tb[:, :3, :3] @ pivot[..., None])[..., 0] + Tb[:, :3, 3]
                dR = so3_exp(torch.randn(B * M, 3, generator=gen).to(qb) * (0.15 * f))
                R = dR @ Tb[:, :3, :3]
                d = torch.randn(B * M, 3, generator=gen).to(qb) * f
                t_c = t_c + torch.stack([0.02 * d[:, 0], 0.02 * d[:, 1], 0.06 * d[:, 2] * t_c[:, 2]], -1)
                Tb[:, :3, :3] = R
                Tb[:, :3, 3] = t_c - (R @ pivot[..., None])[..., 0]
            sb = self._point_score(pts, Tb, target).view(B, M)
            best, arg = sb.min(dim=1)
            better = best < score
            idx = torch.arange(B, device=q.device) * M + arg
            q = torch.where(better[:, None], qb[idx], q)
            T = torch.where(better[:, None, None], Tb[idx], T)
            score = torch.minimum(best, score)
        return q, T, score

    def _suppress_duplicates(self, q: Tensor, T: Tensor, score: Tensor, keep: int, return_score: bool = False):
        """The ``keep`` best by ``score`` whose camera-frame link origins differ from every better kept one by
        more than ``search_nms_m`` (mean over links, metres): diversity for the later stages.
        Returns ``(q, T)`` or, with ``return_score``, ``(q, T, score)``."""
        cfg = self.config
        order = torch.argsort(score)[: max(16 * keep, 64)]
        q, T = q[order], T[order]
        kp = self.fk(q)[..., :3, 3]  # [N, L, 3] base frame
        kp = (T[:, None, :3, :3] @ kp[..., None])[..., 0] + T[:, None, :3, 3]  # camera frame
        chosen: list[int] = []
        for i in range(len(order)):
            if chosen and float((kp[chosen] - kp[i]).norm(dim=-1).mean(-1).min()) < cfg.search_nms_m:
                continue
            chosen.append(i)
            if len(chosen) == keep:
                break
        idx = torch.as_tensor(chosen, device=q.device)
        return (q[idx], T[idx], score[order][idx]) if return_score else (q[idx], T[idx])

    def _root_revolute(self) -> tuple[int, Tensor, Tensor] | None:
        """``(joint index, axis [3], point on the axis [3])`` (base frame) of a revolute joint on the root link, or
        None: the joint whose rotation a camera rotation about the same axis undoes for every moving link."""
        robot = self.model.robot
        for joint in robot.joints:
            if joint.parent == robot.root and joint.type in ("revolute", "continuous") and joint.mimic is None \
                    and joint.name in self.joint_names:
                origin = torch.as_tensor(joint.origin, dtype=torch.float32, device=self.device)
                axis = origin[:3, :3] @ torch.as_tensor(joint.axis, dtype=torch.float32, device=self.device)
                return self.joint_names.index(joint.name), axis / axis.norm(), origin[:3, 3]
        return None

    def _distal_joint(self) -> int | None:
        """Index of the revolute joint that moves the fewest surface points (e.g. a wrist roll), or None."""
        if not hasattr(self, "_distal_cache"):
            types = {j.name: j.type for j in self.model.robot.joints}
            q0 = self.fk.neutral()[None].to(self.device)
            p0 = self._posed_points(q0, 512)
            best, frac_best = None, 2.0
            for j, name in enumerate(self.joint_names):
                if types.get(name) not in ("revolute", "continuous"):
                    continue
                q1 = q0.clone()
                q1[0, j] = q1[0, j] + 0.5
                frac = float(((self._posed_points(q1, 512) - p0).norm(dim=-1) > 1e-6).float().mean())
                if 0.0 < frac < frac_best:
                    best, frac_best = j, frac
            self._distal_cache = best
        return self._distal_cache

    def _distal_variants(self, q: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
        """Known camera: each hypothesis plus ``yaw_offsets - 1`` twins whose distal joint (:meth:`_distal_joint`,
        e.g. a wrist roll) is turned by multiples of 360 deg / ``yaw_offsets``.

        That joint moves only a small part (the hand), so the silhouette barely constrains it and the search leaves
        it anywhere; the renders that rank the candidates then mostly measure its error (a right arm with the hand
        turned ranked below a wrong arm), and refinement can't turn it far. The twins let appearance choose it.
        Twins outside the joint's limits are dropped."""
        n = self.config.yaw_offsets
        j = self._distal_joint()
        if n <= 1 or j is None:
            return q, T
        qs, Ts = [q], [T]
        for k in range(1, n):
            qj = q[:, j] + 2.0 * math.pi * k / n
            qj = torch.remainder(qj + math.pi, 2.0 * math.pi) - math.pi
            ok = (qj >= self.lower[j]) & (qj <= self.upper[j])
            if not ok.any():
                continue
            q_k = q.clone()
            q_k[:, j] = qj
            qs.append(q_k[ok])
            Ts.append(T[ok])
        return torch.cat(qs), torch.cat(Ts)

    def _yaw_variants(self, q: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
        """Each hypothesis plus ``yaw_offsets - 1`` twins: root joint turned by ``d`` and the camera by ``-d``
        about the same axis (all non-root links then look identical from the camera; only the base moves).

        The silhouette search can't tell the twins apart (they differ only in the base), so appearance decides
        when they are rendered. Twins whose root joint would leave its limits are dropped.
        """
        n = self.config.yaw_offsets
        root = self._root_revolute()
        if n <= 1 or root is None:
            return q, T
        j, axis, point = root
        from gen3d_ros.geometry.rotations import so3_exp

        qs, Ts = [q], [T]
        for k in range(1, n):
            d = 2.0 * math.pi * k / n
            qj = q[:, j] + d
            qj = torch.remainder(qj + math.pi, 2.0 * math.pi) - math.pi  # the same rotation, nearest to 0
            ok = (qj >= self.lower[j]) & (qj <= self.upper[j])
            if not ok.any():
                continue
            Rm = so3_exp((-d * axis)[None]).to(T.dtype)[0]  # base-frame rotation by -d about the root axis
            M = torch.eye(4, dtype=T.dtype, device=T.device)
            M[:3, :3] = Rm
            M[:3, 3] = point - Rm @ point
            q_k = q.clone()
            q_k[:, j] = qj
            qs.append(q_k[ok])
            Ts.append((T @ M)[ok])
        return torch.cat(qs), torch.cat(Ts)

    def _fit_translation(
        self, pts: Tensor, R: Tensor, camera: PinholeCamera, mask: Tensor, rounds: int = 5, pivot: Tensor | None = None
    ) -> Tensor:
        """``T_camera_base [B, 4, 4]`` with rotations ``R [B, 3, 3]`` that put posed points ``pts [B, P, 3]`` (base
        frame) where the mask is: closed form, no rendering.

        Matches bounding boxes: the distance scales the projected points' box diagonal (pixels) to the mask's, the
        lateral offset moves the box centre onto the mask's (so that ray passes through the robot's centre). Boxes,
        not moments: the surface samples are spread by area, the mask by *visible* area, so their centroids and
        spreads differ by occlusion (measured: 15-28 cm ADD at the true rotation with moments), while the
        extremities are nearly always visible. A few fixed-point rounds settle the perspective coupling.
        ``pivot [B, 3]``: the rotation centre (default: the mean of ``pts``; pass it when ``pts`` is a hull).
        """
        cam = camera
        m = mask > 0.5
        if not m.any():
            raise ValueError("the robot mask is empty: nothing to fit (check the image, mask or background colour)")
        rows, cols = m.any(dim=1).nonzero()[:, 0], m.any(dim=0).nonzero()[:, 0]
        # pixel centres (+ 0.5) of the extreme mask pixels: where the silhouette's outermost surface projects
        u0, u1 = float(cols.min()) + 0.5, float(cols.max()) + 0.5
        v0, v1 = float(rows.min()) + 0.5, float(rows.max()) + 0.5
        mu, mv = 0.5 * (u0 + u1), 0.5 * (v0 + v1)
        diag = max(math.hypot(u1 - u0, v1 - v0), 1.0)
        pivot = pts.mean(dim=1) if pivot is None else pivot
        p_rel = torch.bmm(pts - pivot[:, None], R.transpose(1, 2))  # camera-aligned, about the pivot
        ext = p_rel[..., :2].amax(1) - p_rel[..., :2].amin(1)  # [B, 2] metres
        t = torch.zeros_like(pivot)
        t[:, 2] = cam.fx * ext.norm(dim=-1) / diag + p_rel[..., 2].amax(1).clamp_min(0)
        for _ in range(rounds):
            pc = p_rel + t[:, None]
            z = pc[..., 2].clamp_min(1e-3)
            pu, pv = cam.fx * pc[..., 0] / z + cam.cx, cam.fy * pc[..., 1] / z + cam.cy
            pu0, pu1, pv0, pv1 = pu.amin(-1), pu.amax(-1), pv.amin(-1), pv.amax(-1)
            s = torch.sqrt((pu1 - pu0) ** 2 + (pv1 - pv0) ** 2).clamp_min(1e-3)
            t[:, 2] = t[:, 2] * (s / diag)
            t[:, 0] = t[:, 0] + (mu - 0.5 * (pu0 + pu1)) * t[:, 2] / cam.fx
            t[:, 1] = t[:, 1] + (mv - 0.5 * (pv0 + pv1)) * t[:, 2] / cam.fy
        T = torch.eye(4, dtype=R.dtype, device=R.device).repeat(R.shape[0], 1, 1)
        T[:, :3, :3] = R
        T[:, :3, 3] = t - (R @ pivot[:, :, None])[..., 0]
        return T

    def _make_state(self, q: Tensor, T: Tensor) -> _State:
        z = unconstrained_from_joints(q, self.lower, self.upper).detach().clone()
        return _State(z=z, cam=CameraPoseParam(T, self._pivot(q).detach()).to(self.device))

    def _select(self, state: _State, index: Tensor) -> _State:
        index = index.to(self.device)
        return _State(z=state.z[index].detach().clone(), cam=state.cam.select(index))

    def _render_losses(self, state: _State, level: _Level) -> tuple[Tensor, dict[str, Tensor]]:
        q = joints_from_unconstrained(state.z, self.lower, self.upper)
        out = self.model.render(q, state.cam(), level.camera, background=self.background, backend=self.config.backend)
        cfg = self.config
        terms = image_loss_terms(out.rgb, out.alpha, level, cfg.w_rgb, cfg.w_mask, cfg.w_outside)
        return sum(terms.values()), terms

    @torch.no_grad()
    def _score(self, state: _State, level: _Level, chunk: int = 16) -> Tensor:
        """Loss ``[B]`` of every hypothesis at ``level`` (forward renders only, in chunks to bound memory)."""
        losses = []
        for start in range(0, state.z.shape[0], chunk):
            idx = torch.arange(start, min(start + chunk, state.z.shape[0]))
            losses.append(self._render_losses(self._select(state, idx), level)[0].cpu())
        return torch.cat(losses)

    def _optimise(
        self,
        state: _State,
        level: _Level,
        iterations: int,
        optimise_q: bool,
        optimise_T: bool,
        prior: tuple[Tensor, Tensor, Tensor] | None = None,
        lr_scale: float = 1.0,
    ) -> tuple[_State, Tensor, int, bool]:
        """Adam on the free parameters; returns (the best state seen per hypothesis, its loss [B], steps, converged)."""
        cfg = self.config
        groups = []
        if optimise_q:
            state.z.requires_grad_(True)
            groups.append({"params": [state.z], "lr": cfg.lr_joints * lr_scale})
        if optimise_T:
            groups += [{"params": [state.cam.omega], "lr": cfg.lr_rotation * lr_scale},
                       {"params": [state.cam.t_c], "lr": cfg.lr_translation * lr_scale}]
        else:
            state.cam.requires_grad_(False)
        B = state.z.shape[0]
        best_loss = torch.full((B,), float("inf"))
        best_z, best_T = state.z.detach().clone(), state.cam().detach().clone()
        if not groups or iterations == 0:
            with torch.no_grad():
                loss, _ = self._render_losses(state, level)
            return state, loss.cpu(), 0, True
        opt = torch.optim.Adam(groups)
        # Exponential decay to lr_decay x the start over the level: large steps to travel, small ones to settle
        # (Adam's steps are ~lr whatever the gradient, so a constant lr would keep circling the minimum).
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1.0 / max(iterations, 1)))
        history: list[float] = []
        converged, used = False, 0
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            loss, _ = self._render_losses(state, level)
            if prior is not None:
                loss = loss + self._smoothness(state, prior)
            # Track the best parameters per hypothesis (the loss belongs to the parameters before this step).
            with torch.no_grad():
                better = loss.detach().cpu() < best_loss
                if better.any():
                    idx = better.nonzero()[:, 0].to(self.device)
                    best_loss[better] = loss.detach().cpu()[better]
                    best_z[idx] = state.z.detach()[idx]
                    best_T[idx] = state.cam().detach()[idx]
            loss.sum().backward()
            opt.step()
            sched.step()
            used += 1
            history.append(float(best_loss.min()))
            if len(history) > cfg.patience:
                old = history[-1 - cfg.patience]
                if old - history[-1] <= cfg.tolerance * abs(old):
                    converged = True
                    break
        pivot = state.cam.pivot.detach()
        return _State(z=best_z, cam=CameraPoseParam(best_T, pivot)), best_loss, used, converged

    def _smoothness(self, state: _State, prior: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Temporal penalty ``[B]``: joint change (rad^2) plus camera rotation (rad^2) and pivot motion (m^2)."""
        q_prev, R_prev, t_prev = prior
        q = joints_from_unconstrained(state.z, self.lower, self.upper)
        cfg = self.config
        # Rotation change: |log(R R_prev^T)|^2 ~ 0.5 |R - R_prev|_F^2 for small changes (smooth, no log needed).
        d_rot = 0.5 * (state.cam.rotation() - R_prev).square().sum(dim=(-1, -2))
        d_t = (state.cam.t_c - t_prev).square().sum(-1)
        return cfg.w_smooth_joints * (q - q_prev).square().sum(-1) + cfg.w_smooth_camera * (d_rot + d_t)

    def _result(
        self, state: _State, level: _Level, iterations: int, converged: bool, seconds: float, hypotheses: int
    ) -> PoseEstimate:
        with torch.no_grad():
            loss, terms = self._render_losses(state, level)
            q = joints_from_unconstrained(state.z, self.lower, self.upper)
            T = state.cam()
        return PoseEstimate(
            q=q[0].double().cpu().numpy(),
            T_camera_base=T[0].double().cpu().numpy(),
            loss=float(loss[0]),
            iterations=int(iterations),
            converged=bool(converged),
            seconds=float(seconds),
            joint_names=list(self.joint_names),
            loss_terms={k: float(v[0]) for k, v in terms.items()},
            hypotheses=int(hypotheses),
        )


# ------------------------------------------------------------------------------------------------ the processor


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
    Not thread-safe: call from one worker thread.
    """

    def __init__(
        self,
        model,
        config: PoseEstimatorConfig | None = None,
        known_camera: np.ndarray | None = None,
        known_joints: np.ndarray | None = None,
        initial_joints: np.ndarray | None = None,
    ) -> None:
        self.estimator = PoseEstimator(model, config)
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
        if self.known_joints is not None:
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
        return RobotPoseResult(estimate=est, stamp=stamp, latency_s=time.perf_counter() - t0, tracked=tracked)


__all__ = ["MODES", "PoseEstimate", "PoseEstimator", "PoseEstimatorConfig", "RobotPoseProcessor", "RobotPoseResult",
           "image_loss_terms", "image_to_tensor", "mask_from_background", "pose_from_matrix"]
