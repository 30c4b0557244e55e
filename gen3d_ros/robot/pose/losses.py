"""The losses of a hypothesis: its render against the target (photometric, silhouette and outside-silhouette terms)
and, when tracking, its change from the previous frame (temporal smoothness)."""

from __future__ import annotations

import torch
from torch import Tensor

from gen3d_ros.robot.pose.images import Level


TERMS = ("rgb", "mask", "outside")
"""The image loss terms, in the order of :func:`image_losses`' last axis."""


def image_losses(rgb: Tensor, alpha: Tensor, level: Level, w_rgb: float, w_mask: float, w_outside: float) -> Tensor:
    """Weighted per-hypothesis loss terms ``[B, 3]`` (order :data:`TERMS`) of renders ``rgb [B, h, w, 3]``,
    ``alpha [B, h, w]``: photometric L1 (RGB in [0, 1]), silhouette L2 (alpha vs mask) and the alpha outside the
    mask times the distance to it (image widths), each a per-pixel mean (resolution independent).

    One autograd node with its gradient written out (:class:`_ImageLosses`): 8 ops backward instead of ~22."""
    return _ImageLosses.apply(rgb, alpha, level.rgb, level.mask, level.outside, w_rgb, w_mask, w_outside)


class _ImageLosses(torch.autograd.Function):
    """:func:`image_losses`; the target (``level``'s rgb, mask, outside) gets no gradient."""

    @staticmethod
    def forward(ctx, rgb: Tensor, alpha: Tensor, target: Tensor, mask: Tensor, outside: Tensor, w_rgb: float,
                w_mask: float, w_outside: float) -> Tensor:
        diff, miss = rgb - target, alpha - mask
        ctx.save_for_backward(diff, miss, outside)
        n = alpha.shape[-1] * alpha.shape[-2]  # pixels: the terms are per-pixel means
        ctx.scales = (w_rgb / (3 * n), 2.0 * w_mask / n, w_outside / n)
        return torch.stack((diff.abs().mean(dim=(-1, -2, -3)) * w_rgb, miss.square().mean(dim=(-1, -2)) * w_mask,
                            (alpha * outside).mean(dim=(-1, -2)) * w_outside), dim=-1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        diff, miss, outside = ctx.saved_tensors
        s_rgb, s_mask, s_out = ctx.scales
        g = grad[..., None, None]  # [..., 3, 1, 1]
        grad_rgb = diff.sign() * (g[..., 0, :, :, None] * s_rgb)  # d|x|/dx = sign(x), 0 at 0 like abs's
        grad_alpha = miss * (g[..., 1, :, :] * s_mask) + outside * (g[..., 2, :, :] * s_out)
        return grad_rgb, grad_alpha, None, None, None, None, None, None


def image_loss_terms(
    rgb: Tensor, alpha: Tensor, level: Level, w_rgb: float, w_mask: float, w_outside: float
) -> dict[str, Tensor]:
    """:func:`image_losses` as ``{name: [B]}``."""
    return dict(zip(TERMS, image_losses(rgb, alpha, level, w_rgb, w_mask, w_outside).unbind(-1)))


def smoothness_penalty(q: Tensor, R: Tensor, t_c: Tensor, prior: tuple[Tensor, Tensor, Tensor], w_joints: float,
                       w_camera: float) -> Tensor:
    """Temporal penalty ``[B]`` of hypotheses ``q [B, J]`` (rad / m), camera rotation ``R [B, 3, 3]`` and pivot
    position ``t_c [B, 3]`` (camera frame, m) against the previous frame's ``prior = (q, R, t_c)``:
    ``w_joints`` per rad^2 of joint change plus ``w_camera`` per rad^2 of rotation and m^2 of pivot motion.
    The rotation change is ``|log(R R_prev^T)|^2 ~ 0.5 |R - R_prev|_F^2`` for small changes (smooth, no log).

    One autograd node with its gradient written out (:class:`_Smoothness`): 6 ops backward instead of ~20."""
    return _Smoothness.apply(q, R, t_c, *prior, w_joints, w_camera)


class _Smoothness(torch.autograd.Function):
    """:func:`smoothness_penalty`; the prior gets no gradient."""

    @staticmethod
    def forward(ctx, q: Tensor, R: Tensor, t_c: Tensor, q_prev: Tensor, R_prev: Tensor, t_prev: Tensor,
                w_joints: float, w_camera: float) -> Tensor:
        dq, dR, dt = q - q_prev, R - R_prev, t_c - t_prev
        ctx.save_for_backward(dq, dR, dt)
        ctx.weights = (w_joints, w_camera)
        return w_joints * dq.square().sum(-1) + w_camera * (0.5 * dR.square().sum(dim=(-1, -2)) + dt.square().sum(-1))

    @staticmethod
    def backward(ctx, grad: Tensor):
        dq, dR, dt = ctx.saved_tensors
        w_joints, w_camera = ctx.weights
        g = grad[..., None]
        return (dq * (g * (2.0 * w_joints)), dR * (g[..., None] * w_camera), dt * (g * (2.0 * w_camera)),
                None, None, None, None, None)


__all__ = ["TERMS", "image_loss_terms", "image_losses", "smoothness_penalty"]
