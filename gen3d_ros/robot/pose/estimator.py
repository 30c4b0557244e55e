"""``PoseEstimator``: joints and camera pose of a robot from RGB images, by analysis-by-synthesis.

It composes the steps of :mod:`gen3d_ros.robot.pose`: the target pyramid (:mod:`~.images`), the starting
hypotheses (:mod:`~.hypotheses`, ranked by the silhouette search of :mod:`~.search`), gradient refinement through
the renderer (:mod:`~.refine`) and video tracking (:mod:`~.tracking`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.pose import tracking
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig
from gen3d_ros.robot.pose.hypotheses import HypothesisSampler
from gen3d_ros.robot.pose.images import Level, image_to_tensor, make_level, mask_from_background
from gen3d_ros.robot.pose.refine import PoseRefiner, PoseState, Refined
from gen3d_ros.robot.pose.search import SilhouetteSearch
from gen3d_ros.robot.pose.surface import PosedSurface


class _Laps:
    """Wall time of consecutive phases (seconds by name, in order) since construction."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.start


class PoseEstimator:
    """Joint angles and camera pose of a robot from RGB images, through a differentiable robot renderer.

    ``model`` is a :class:`~gen3d_ros.robot.gaussians.RobotGaussianModel` (trained, or untrained from the URDF);
    anything with ``render(q, T_camera_base, camera, background, backend)``, ``fk`` and ``robot`` works. The
    model's parameters are frozen here (``requires_grad_(False)``): only the pose is optimised. A model with
    ``frozen()`` (the Gaussian model) is rendered through it: its pose-independent parts are computed once, here,
    so later changes to its parameters are not seen (make a new estimator). ``cuda_graphs``: on CUDA, record the
    pose -> Gaussians part of each Adam step as CUDA graphs (see :mod:`~gen3d_ros.robot.pose.graphs`); None (the
    default): on whenever the device is CUDA. Measured on an H200 with gsplat (``bench/performance.py``): tracking
    9.2 -> 21.4 frames/s, a single-image estimate 0.91 -> 0.38 s, the same joint errors.

    Frames and units: ``q`` in radians (revolute) / metres (prismatic), order ``model.fk.joint_names``;
    ``T_camera_base`` (4x4) maps base-frame points to the OpenCV optical frame of the camera, metres; images
    ``[H, W, 3]`` RGB (uint8 0..255 or float 0..1), masks ``[H, W]`` (robot = 1).
    """

    def __init__(self, model, config: PoseEstimatorConfig | None = None, cuda_graphs: bool | None = None) -> None:
        self.config = config or PoseEstimatorConfig()
        from gen3d_ros.devices import check_device

        self.device = torch.device(check_device(self.config.device))
        self.model = model.to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.renderer = self.model.frozen() if hasattr(self.model, "frozen") else self.model
        self.fk = model.fk
        self.joint_names: list[str] = list(self.fk.joint_names)
        self.lower = self.fk.lower.to(self.device)
        self.upper = self.fk.upper.to(self.device)
        self.background = torch.tensor(self.config.background, dtype=torch.float32, device=self.device)
        # Link-frame surface points for the silhouette search and the camera pivot (cheaper than rendering).
        self.surface = PosedSurface(model.robot, self.fk, self.config.search_points, self.device)
        generator = torch.Generator().manual_seed(self.config.seed)  # joint samples and hill climbing, in order
        search = SilhouetteSearch(self.config, self.surface, self.lower, self.upper, generator)
        self.hypotheses = HypothesisSampler(self.config, model.robot, self.surface, search, generator, self.device)
        self.refiner = PoseRefiner(self.renderer, self.config, self.surface, self.background, self.device,
                                   cuda_graphs=self.device.type == "cuda" if cuda_graphs is None else cuda_graphs)

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

        Method: the hypotheses of :class:`~gen3d_ros.robot.pose.hypotheses.HypothesisSampler` (a silhouette search
        that renders nothing) are rendered once at the coarsest pyramid level, and the best are optimised
        coarse-to-fine (``PinholeCamera.scaled`` renders of an area-downsampled target), pruned by loss after each
        level; the answer is the lowest full-resolution loss after refinement. A given pose (``q_init`` with a
        known camera) is never pruned: it is refined to the end beside the search's best.
        """
        laps = _Laps()
        cfg = self.config
        given = [x for x in (T_camera_base, q, q_init) if x is not None]
        given_t = iter(self._tensors(*given))  # before any device work: one copy, no wait
        known_T = None if T_camera_base is None else next(given_t).reshape(4, 4)
        known_q = None if q is None else next(given_t).reshape(self.fk.num_joints)
        q_guess = None if q_init is None else next(given_t).reshape(-1)
        rgb, mask_t = self._target(image, mask, camera)
        levels = [make_level(rgb, mask_t, camera, s) for s in cfg.pyramid_scales]
        laps.lap("target")
        q_hyp, T_hyp, n_searched, n_given = self.hypotheses.initial(mask_t, camera, known_q, known_T, q_guess)
        state = self.refiner.make_state(q_hyp, T_hyp)
        laps.lap("search")
        refined, total_iters = self._coarse_to_fine(state, levels, n_given, known_q is None, known_T is None, laps)
        # the answer: the lowest loss after refinement at the last (finest) level, over every refined candidate
        best = torch.argmin(refined.loss).reshape(1)
        est = self.refiner.result(self.refiner.select(refined.state, best), refined.terms[best], total_iters,
                                  refined.converged, 0.0, n_searched)
        laps.lap("result")
        return replace(est, seconds=laps.total, phase_seconds=laps.seconds)

    def _coarse_to_fine(self, state: PoseState, levels: list[Level], n_given: int, optimise_q: bool,
                        optimise_T: bool, laps: _Laps) -> tuple[Refined, int]:
        """Optimise ``state`` level by level, keeping the ``config.keep`` best before each; returns (the last
        level's :class:`~gen3d_ros.robot.pose.refine.Refined`, Adam steps summed over hypotheses and levels).

        The first ``n_given`` hypotheses are given poses (``q_init`` with a known camera): they are refined to the
        end whatever their coarse rank (a nearby guess often scores worse than a search result before
        refinement, and better after it), on top of the ``keep`` best.
        """
        cfg = self.config
        n_hyp = state.z.shape[0]
        given = torch.arange(n_hyp) < n_given
        total_iters = 0
        best_loss = torch.full((n_hyp,), float("inf"))  # on the host: the pruning below is host logic
        for li, (level, iters, keep) in enumerate(zip(levels, cfg.iterations, cfg.keep)):
            if state.z.shape[0] > keep:
                if li == 0:
                    best_loss = self.refiner.score(state, level).cpu()
                    laps.lap("score")
                scores = best_loss
                order = torch.argsort(scores)[:keep]
                extra = given.nonzero()[:, 0]
                extra = extra[~torch.isin(extra, order)]
                order = torch.cat([order, extra])
                state = self.refiner.select(state, order)
                given = given[order]
                best_loss = best_loss[order]
            # every step's convergence read, the stopping rule the search's budget was tuned with: a read costs
            # less than a step here (gsplat waits for its tile counts every step anyway), and stopping later
            # changed single-image results (bench/pose_estimation.py, known camera: ADD AUC 0.463 -> 0.453)
            refined = self.refiner.optimise(state, level, iters, optimise_q, optimise_T, check_every=1)
            state, best_loss = refined.state, refined.loss.cpu()
            total_iters += refined.steps * state.z.shape[0]
            laps.lap(f"level{li}")
        return refined, total_iters

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
        # the small inputs first, in one copy: a copy from pageable host memory waits for the device's queue
        q0, T0, *prev = self._tensors(q_init, T_init, *(prior if prior is not None else ()))
        rgb, mask_t = self._target(image, mask, camera)
        level = make_level(rgb, mask_t, camera, cfg.track_scale if scale is None else scale)
        state = self.refiner.make_state(q0.reshape(1, -1), T0.reshape(1, 4, 4))
        prior_t = None
        if prior is not None:
            q_prev, T_prev = prev[0].reshape(1, -1), prev[1].reshape(1, 4, 4)
            # Where the previous pose put the pivot, in camera coordinates: the reference for translation smoothness.
            t_prev = (T_prev[:, :3, :3] @ state.cam.pivot[:, :, None])[..., 0] + T_prev[:, :3, 3]
            prior_t = (q_prev, T_prev[:, :3, :3], t_prev)
        iters = cfg.track_iterations if iterations is None else iterations
        refined = self.refiner.optimise(state, level, iters, optimise_q, optimise_T, prior=prior_t,
                                        lr_scale=cfg.track_lr_scale if lr_scale is None else lr_scale)
        return self.refiner.result(refined.state, refined.terms, refined.steps, refined.converged,
                                   time.perf_counter() - t0, 1)

    def track(
        self,
        frames: Sequence[np.ndarray | Tensor],
        camera: PinholeCamera,
        masks: Sequence[np.ndarray | Tensor | None] | None = None,
        initial: PoseEstimate | None = None,
        T_camera_base: np.ndarray | Tensor | None = None,
    ) -> list[PoseEstimate]:
        """Per-frame estimates of a video (see :func:`gen3d_ros.robot.pose.tracking.track`)."""
        return tracking.track(self, frames, camera, masks, initial, T_camera_base)

    def track_step(
        self,
        image: np.ndarray | Tensor,
        camera: PinholeCamera,
        history: Sequence[PoseEstimate],
        mask: np.ndarray | Tensor | None = None,
        T_camera_base: np.ndarray | Tensor | None = None,
    ) -> PoseEstimate:
        """One video frame given the previous estimates (see :func:`gen3d_ros.robot.pose.tracking.track_step`)."""
        return tracking.track_step(self, image, camera, history, mask, T_camera_base)

    def render(self, q: np.ndarray | Tensor, T_camera_base: np.ndarray | Tensor, camera: PinholeCamera):
        """The model's render (no gradients) at ``q`` [J] from ``T_camera_base`` [4, 4] on the configured background."""
        with torch.no_grad():
            return self.renderer.render(self._tensor(q), self._tensor(T_camera_base), camera,
                                        background=self.background, backend=self.config.backend)

    def _tensor(self, x: np.ndarray | Tensor) -> Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32).to(self.device)

    def _tensors(self, *xs: np.ndarray | Tensor) -> list[Tensor]:
        """float32 device tensors of ``xs`` (their shapes); the host arrays among them in one host-to-device copy."""
        host = [i for i, x in enumerate(xs) if not torch.is_tensor(x)]
        out: list[Tensor] = [x.to(self.device, torch.float32) if torch.is_tensor(x) else x for x in xs]
        if host:
            arrays = [np.asarray(xs[i], dtype=np.float32) for i in host]
            flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays])).to(self.device)
            for i, a, part in zip(host, arrays, flat.split([a.size for a in arrays])):
                out[i] = part.reshape(a.shape)
        return out

    def _target(self, image, mask, camera: PinholeCamera) -> tuple[Tensor, Tensor]:
        """``(rgb [H, W, 3], mask [H, W])`` on the device; the mask from the background colour when not given."""
        rgb = image_to_tensor(image, self.device)
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but the camera is {camera.width}x{camera.height}; "
                "pass the intrinsics of this image (PinholeCamera.scaled for resized images)"
            )
        if mask is None:
            mask_t = mask_from_background(rgb, self.background, self.config.mask_threshold)  # on the device
        else:
            mask_t = self._tensor(mask).reshape(rgb.shape[:2])
        return rgb, mask_t


__all__ = ["PoseEstimator"]
