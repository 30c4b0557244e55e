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
    mask times the distance to it (image widths), each a per-pixel mean (resolution independent)."""
    return torch.stack((
        (rgb - level.rgb).abs().mean(dim=(-1, -2, -3)) * w_rgb,
        (alpha - level.mask).square().mean(dim=(-1, -2)) * w_mask,
        (alpha * level.outside).mean(dim=(-1, -2)) * w_outside,
    ), dim=-1)


def image_loss_terms(
    rgb: Tensor, alpha: Tensor, level: Level, w_rgb: float, w_mask: float, w_outside: float
) -> dict[str, Tensor]:
    """:func:`image_losses` as ``{name: [B]}``."""
    return dict(zip(TERMS, image_losses(rgb, alpha, level, w_rgb, w_mask, w_outside).unbind(-1)))


def smoothness_penalty(q: Tensor, R: Tensor, t_c: Tensor, prior: tuple[Tensor, Tensor, Tensor], w_joints: float,
                       w_camera: float) -> Tensor:
    """Temporal penalty ``[B]`` of hypotheses ``q [B, J]`` (rad / m), camera rotation ``R [B, 3, 3]`` and pivot
    position ``t_c [B, 3]`` (camera frame, m) against the previous frame's ``prior = (q, R, t_c)``:
    ``w_joints`` per rad^2 of joint change plus ``w_camera`` per rad^2 of rotation and m^2 of pivot motion."""
    q_prev, R_prev, t_prev = prior
    # Rotation change: |log(R R_prev^T)|^2 ~ 0.5 |R - R_prev|_F^2 for small changes (smooth, no log needed).
    d_rot = 0.5 * (R - R_prev).square().sum(dim=(-1, -2))
    d_t = (t_c - t_prev).square().sum(-1)
    return w_joints * (q - q_prev).square().sum(-1) + w_camera * (d_rot + d_t)


__all__ = ["TERMS", "image_loss_terms", "image_losses", "smoothness_penalty"]
