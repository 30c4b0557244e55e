"""CUDA graphs of the pose -> Gaussians part of a refinement step (on by default on CUDA; ``PoseEstimator(..., cuda_graphs=False)`` turns them off).

An eager Adam step of tracking launches ~320 small kernels besides the splatting, ~200 of them for the parameters
-> joints -> forward kinematics -> skinned Gaussians and camera part, forward and backward; on a GPU each costs a
launch (~5-10 us of host time) while the tensors are tiny. ``torch.cuda.make_graphed_callables`` records that
part once per batch size and replays it as one graph forward and one backward. It can, because the refinement
loop has no host syncs, no CPU tensors and fixed shapes there (the splatting, whose tile lists change size, stays
outside the graph).

Frames and units as in :mod:`gen3d_ros.robot.pose.refine`: ``x = [z, omega, t_c]`` ``[B, J + 6]`` (joint logits,
camera rotation increment rad, pivot position m camera frame), ``R0 [B, 3, 3]``, ``pivot [B, 3]`` (m, base).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gen3d_ros.robot.parametrization import camera_from_pivot, joints_from_unconstrained
from gen3d_ros.robot.pose.losses import image_losses, smoothness_penalty

GAUSSIAN_KEYS = ("means", "quats", "scales", "opacities", "colors")
_loss_graphs = False


def set_loss_graphs(on: bool) -> bool:
    """Whether estimators made from now on (with CUDA graphs) also graph each step's losses (:class:`LossGraphs`;
    off by default until measured on a GPU: ``bench/performance.py --pose-variants NAME:loss_graphs=1``); returns
    the previous setting."""
    global _loss_graphs
    previous, _loss_graphs = _loss_graphs, bool(on)
    return previous


def loss_graphs_enabled() -> bool:
    return _loss_graphs


class PoseGraphs:
    """``x, R0, pivot -> (Gaussians, T [B, 4, 4], R [B, 3, 3], q [B, J])`` of ``renderer`` (a
    :class:`~gen3d_ros.robot.gaussians.FrozenGaussianRenderer`) as CUDA graphs, one per batch size, recorded on
    first use (a few eager warm-up runs, then the capture: ~1 s once).

    The outputs are the graph's static buffers: valid until the next call (one step's render and backward).
    """

    def __init__(self, renderer, lower: Tensor, upper: Tensor) -> None:
        self.renderer = renderer
        self.lower, self.upper = lower, upper
        self._graphed: dict[int, Callable[..., tuple[Tensor, ...]]] = {}

    def _pose(self, x: Tensor, R0: Tensor, pivot: Tensor) -> tuple[Tensor, ...]:
        z, omega, t_c = x.split((x.shape[1] - 6, 3, 3), dim=-1)
        q = joints_from_unconstrained(z, self.lower, self.upper)
        T, R = camera_from_pivot(omega, t_c, R0, pivot)
        g = self.renderer.posed_gaussians(q)
        return (*(g[k] for k in GAUSSIAN_KEYS), T, R, q)

    def __call__(self, x: Tensor, R0: Tensor, pivot: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        """The Gaussians (``posed_gaussians``' dict), ``T``, ``R`` and ``q`` of ``x`` (which requires grad)."""
        B = x.shape[0]
        if B not in self._graphed:
            sample = (x.detach().clone().requires_grad_(True), R0.detach().clone(), pivot.detach().clone())
            self._graphed[B] = torch.cuda.make_graphed_callables(self._pose, sample)
        *gaussians, T, R, q = self._graphed[B](x, R0, pivot)
        return dict(zip(GAUSSIAN_KEYS, gaussians)), T, R, q


class LossGraphs:
    """The image losses and the smoothness penalty of a step, ``(rgb [B, h, w, 3], alpha [B, h, w], level,
    q [B, J], R [B, 3, 3], t_c [B, 3], prior) -> (loss [B], terms [B, 3])``, as CUDA graphs (forward and backward),
    one per image size, batch and prior presence, recorded on first use: ~20 launches a step become two. The
    splatting between :class:`PoseGraphs` and these stays eager. ``weights``: ``(w_rgb, w_mask, w_outside,
    w_smooth_joints, w_smooth_camera)``; the level's target images are copied into the graph's inputs per call."""

    def __init__(self, weights: tuple[float, float, float, float, float]) -> None:
        self.weights = tuple(float(w) for w in weights)
        self._graphed: dict[tuple, Callable[..., tuple[Tensor, ...]]] = {}

    def losses(self, rgb: Tensor, alpha: Tensor, target: Tensor, mask: Tensor, outside: Tensor,
               *pose_and_prior: Tensor) -> tuple[Tensor, Tensor]:
        """What is recorded (also the eager reference): ``(loss [B], terms [B, 3])``; ``pose_and_prior``:
        ``(q, R, t_c, q_prev, R_prev, t_prev)`` or nothing (no smoothness penalty)."""
        w_rgb, w_mask, w_out, w_q, w_cam = self.weights
        terms = image_losses(rgb, alpha, _Target(target, mask, outside), w_rgb, w_mask, w_out)
        loss = terms.sum(-1)
        if pose_and_prior:
            q, R, t_c, *prior = pose_and_prior
            loss = loss + smoothness_penalty(q, R, t_c, tuple(prior), w_q, w_cam)
        return loss, terms

    def __call__(self, rgb: Tensor, alpha: Tensor, level, q: Tensor, R: Tensor, t_c: Tensor,
                 prior: tuple[Tensor, Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        args = (rgb, alpha, level.rgb, level.mask, level.outside) + ((q, R, t_c, *prior) if prior is not None else ())
        key = tuple(tuple(a.shape) for a in args)
        if key not in self._graphed:
            sample = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
            self._graphed[key] = torch.cuda.make_graphed_callables(self.losses, sample)
        return self._graphed[key](*args)


class _Target:
    """The three target images of a :class:`~gen3d_ros.robot.pose.images.Level` (what ``image_losses`` reads)."""

    def __init__(self, rgb: Tensor, mask: Tensor, outside: Tensor) -> None:
        self.rgb, self.mask, self.outside = rgb, mask, outside


__all__ = ["GAUSSIAN_KEYS", "LossGraphs", "PoseGraphs", "loss_graphs_enabled", "set_loss_graphs"]
