"""``PoseEstimator``: joints and camera pose of a robot from RGB images, by analysis-by-synthesis.

It composes the steps of :mod:`gen3d_ros.robot.pose`: the target pyramid (:mod:`~.images`), the starting
hypotheses (:mod:`~.hypotheses`, ranked by the silhouette search of :mod:`~.search`), gradient refinement through
the renderer (:mod:`~.refine`) and video tracking (:mod:`~.tracking`).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.geometry.camera import PinholeCamera
from gen3d_ros.robot.pose import tracking
from gen3d_ros.robot.pose.config import PoseEstimate, PoseEstimatorConfig
from gen3d_ros.robot.pose.hypotheses import HypothesisSampler
from gen3d_ros.robot.pose.images import Level, image_to_tensor, make_level, mask_from_background
from gen3d_ros.robot.pose.refine import PoseRefiner, PoseState
from gen3d_ros.robot.pose.search import SilhouetteSearch
from gen3d_ros.robot.pose.surface import PosedSurface


class PoseEstimator:
    """Joint angles and camera pose of a robot from RGB images, through a differentiable robot renderer.

    ``model`` is a :class:`~gen3d_ros.robot.gaussians.RobotGaussianModel` (trained, or untrained from the URDF);
    anything with ``render(q, T_camera_base, camera, background, backend)``, ``fk`` and ``robot`` works. The
    model's parameters are frozen here (``requires_grad_(False)``): only the pose is optimised.

    Frames and units: ``q`` in radians (revolute) / metres (prismatic), order ``model.fk.joint_names``;
    ``T_camera_base`` (4x4) maps base-frame points to the OpenCV optical frame of the camera, metres; images
    ``[H, W, 3]`` RGB (uint8 0..255 or float 0..1), masks ``[H, W]`` (robot = 1).
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
        # Link-frame surface points for the silhouette search and the camera pivot (cheaper than rendering).
        self.surface = PosedSurface(model.robot, self.fk, self.config.search_points, self.device)
        generator = torch.Generator().manual_seed(self.config.seed)  # joint samples and hill climbing, in order
        search = SilhouetteSearch(self.config, self.surface, self.lower, self.upper, generator)
        self.hypotheses = HypothesisSampler(self.config, model.robot, self.surface, search, generator, self.device)
        self.refiner = PoseRefiner(self.model, self.config, self.surface, self.background, self.device)

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
        t0 = time.perf_counter()
        cfg = self.config
        rgb, mask_t = self._target(image, mask, camera)
        levels = [make_level(rgb, mask_t, camera, s) for s in cfg.pyramid_scales]
        known_T = None if T_camera_base is None else self._tensor(T_camera_base).reshape(4, 4)
        known_q = None if q is None else self._tensor(q).reshape(self.fk.num_joints)
        q_guess = None if q_init is None else self._tensor(q_init).reshape(-1)
        q_hyp, T_hyp, n_searched, n_given = self.hypotheses.initial(mask_t, camera, known_q, known_T, q_guess)
        state = self.refiner.make_state(q_hyp, T_hyp)
        state, best_loss, total_iters, converged = self._coarse_to_fine(
            state, levels, n_given, optimise_q=known_q is None, optimise_T=known_T is None)
        # the answer: the lowest loss after refinement at the last (finest) level, over every refined candidate
        state = self.refiner.select(state, torch.tensor([int(torch.argmin(best_loss))]))
        return self.refiner.result(state, levels[-1], total_iters, converged, time.perf_counter() - t0, n_searched)

    def _coarse_to_fine(self, state: PoseState, levels: list[Level], n_given: int, optimise_q: bool,
                        optimise_T: bool) -> tuple[PoseState, Tensor, int, bool]:
        """Optimise ``state`` level by level, keeping the ``config.keep`` best before each; returns (state, its best
        losses [B] at the last level, Adam steps summed over hypotheses, converged at the last level).

        The first ``n_given`` hypotheses are given poses (``q_init`` with a known camera): they are refined to the
        end whatever their coarse rank (a nearby guess often scores worse than a search result before
        refinement, and better after it), on top of the ``keep`` best.
        """
        cfg = self.config
        n_hyp = state.z.shape[0]
        given = torch.arange(n_hyp) < n_given
        total_iters, converged = 0, False
        best_loss = torch.full((n_hyp,), float("inf"))
        for li, (level, iters, keep) in enumerate(zip(levels, cfg.iterations, cfg.keep)):
            if state.z.shape[0] > keep:
                scores = best_loss if li > 0 else self.refiner.score(state, level)
                order = torch.argsort(scores)[:keep]
                extra = given.nonzero()[:, 0]
                extra = extra[~torch.isin(extra, order)]
                order = torch.cat([order, extra])
                state = self.refiner.select(state, order)
                given = given[order]
                best_loss = best_loss[order] if li > 0 else scores[order]
            state, best_loss, used, converged = self.refiner.optimise(state, level, iters, optimise_q, optimise_T)
            total_iters += used * state.z.shape[0]
        return state, best_loss, total_iters, converged

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
        level = make_level(rgb, mask_t, camera, cfg.track_scale if scale is None else scale)
        state = self.refiner.make_state(self._tensor(q_init).reshape(1, -1), self._tensor(T_init).reshape(1, 4, 4))
        prior_t = None
        if prior is not None:
            q_prev = self._tensor(prior[0]).reshape(1, -1)
            T_prev = self._tensor(prior[1]).reshape(1, 4, 4)
            # Where the previous pose put the pivot, in camera coordinates: the reference for translation smoothness.
            t_prev = (T_prev[:, :3, :3] @ state.cam.pivot[:, :, None])[..., 0] + T_prev[:, :3, 3]
            prior_t = (q_prev, T_prev[:, :3, :3], t_prev)
        iters = cfg.track_iterations if iterations is None else iterations
        state, _, used, converged = self.refiner.optimise(
            state, level, iters, optimise_q, optimise_T, prior=prior_t,
            lr_scale=cfg.track_lr_scale if lr_scale is None else lr_scale)
        return self.refiner.result(state, level, used, converged, time.perf_counter() - t0, 1)

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
            return self.model.render(self._tensor(q), self._tensor(T_camera_base), camera,
                                     background=self.background, backend=self.config.backend)

    def _tensor(self, x: np.ndarray | Tensor) -> Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32).to(self.device)

    def _target(self, image, mask, camera: PinholeCamera) -> tuple[Tensor, Tensor]:
        """``(rgb [H, W, 3], mask [H, W])`` on the device; the mask from the background colour when not given."""
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


__all__ = ["PoseEstimator"]
