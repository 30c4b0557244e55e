"""Unconstrained parametrisations of robot state for gradient-based fitting (pose estimation, visual MPC).

* Joints within limits by construction: ``q = lower + (upper - lower) * sigmoid(z)`` with ``z`` free. Adam on ``z``
  can never leave ``[lower, upper]``, and the gradient vanishes smoothly at the limits instead of being clipped.
* Camera poses on SE(3): ``T_camera_base`` is stored as a fixed base rotation ``R0`` and translation, plus a free
  axis-angle increment ``omega`` applied in the camera frame (``R = exp(omega) R0``) and a free position ``t_c`` of a
  *pivot* point (the robot's centre) in the camera frame. Rotating about the pivot instead of the camera centre
  decouples the parameters: ``omega`` turns the robot in place, ``t_c[:2] / t_c[2]`` moves it across the image and
  ``t_c[2]`` sets its distance. ``R`` is always exactly orthonormal (no re-projection step needed).

Frames and units: ``q`` radians (revolute) or metres (prismatic); ``T_camera_base`` maps base-frame points to an
OpenCV optical camera frame (metres); ``omega`` radians (camera-frame axis-angle); ``pivot`` metres, base frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


LIMIT_EPS = 1e-4
"""Fraction of the joint range kept away from the limits when mapping ``q -> z`` (``logit`` is infinite at 0 and 1)."""


def joints_from_unconstrained(z: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``q [..., J] = lower + (upper - lower) * sigmoid(z)``: always inside ``[lower, upper]`` (radians / metres)."""
    return lower + (upper - lower) * torch.sigmoid(z)


def unconstrained_from_joints(q: Tensor, lower: Tensor, upper: Tensor, eps: float = LIMIT_EPS) -> Tensor:
    """Inverse of :func:`joints_from_unconstrained`; ``q`` is clamped to ``eps`` of the range inside the limits first."""
    span = (upper - lower).clamp_min(1e-12)
    u = ((q - lower) / span).clamp(eps, 1.0 - eps)
    return torch.logit(u)


def rotation_with_increment(omega: Tensor, R0: Tensor) -> Tensor:
    """``exp(omega) @ R0`` ``[..., 3, 3]``: an axis-angle increment ``omega [..., 3]`` (camera frame) on ``R0``.

    Rodrigues' formula ``exp(omega) = I + a K + b K^2`` (``K`` the cross-product matrix of ``omega``,
    ``a = sin t / t = s cos(t / 2)``, ``b = (1 - cos t) / t^2 = s^2 / 2`` with ``s = sin(t / 2) / (t / 2)``,
    ``t = |omega|``; no cancellation at small ``t``): ~15 ops where the quaternion route of
    :func:`~gen3d_ros.geometry.rotations.so3_exp` takes ~50, which counts in optimisation loops that evaluate
    it every step (forward and backward). At ``omega = 0`` the angle's gradient is cut (``a``, ``b`` are even
    in ``t``: their true derivative is 0 there), so there are no NaNs.
    """
    half = omega.square().sum(-1)[..., None, None].clamp_min(1e-24).sqrt() * 0.5  # [..., 1, 1] rad
    s = torch.sin(half) / half
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    shape = (*omega.shape[:-1], 3, 3)
    K = torch.linalg.cross(eye.expand(shape), omega[..., None, :].expand(shape))  # row i: e_i x omega = K[i]
    return (eye + (s * torch.cos(half)) * K + (0.5 * s.square()) * (K @ K)) @ R0


def camera_from_pivot(omega: Tensor, t_c: Tensor, R0: Tensor, pivot: Tensor) -> tuple[Tensor, Tensor]:
    """``(T_camera_base [B, 4, 4], R_camera_base [B, 3, 3])`` of the pivot parametrisation (see
    :class:`CameraPoseParam`): ``R = exp(omega) R0``, ``t = t_c - R pivot``; ``omega, t_c, pivot [B, 3]``
    (rad, m camera frame, m base frame), ``R0 [B, 3, 3]``."""
    R = rotation_with_increment(omega, R0)
    t = t_c - (R @ pivot[..., None])[..., 0]
    T = F.pad(torch.cat([R, t[..., None]], dim=-1), (0, 0, 0, 1))  # bottom row 0 0 0 0, then its 1
    T[..., 3, 3] = 1.0
    return T, R


class CameraPoseParam(torch.nn.Module):
    """``B`` camera poses ``T_camera_base [B, 4, 4]`` as free parameters ``omega [B, 3]`` (rad) and ``t_c [B, 3]`` (m).

    ``T_camera_base = [[R, t_c - R @ pivot], [0, 1]]`` with ``R = exp(omega) @ R0``: ``t_c`` is where the base-frame
    ``pivot`` point appears in the camera frame. ``R0`` and ``pivot`` are buffers (not optimised); :meth:`rebase`
    folds the current ``omega`` into ``R0`` so the increment stays small (axis-angle is best-conditioned near 0).
    """

    def __init__(self, T_camera_base: Tensor, pivot: Tensor) -> None:
        """``T_camera_base`` ``[B, 4, 4]`` (or ``[4, 4]``) initial poses; ``pivot`` ``[3]`` or ``[B, 3]`` base frame, metres."""
        super().__init__()
        T = T_camera_base if T_camera_base.ndim == 3 else T_camera_base[None]
        if T.shape[1:] != (4, 4):
            raise ValueError(f"T_camera_base must be [4, 4] or [B, 4, 4], got {list(T_camera_base.shape)}")
        pivot = torch.as_tensor(pivot, dtype=T.dtype, device=T.device).expand(T.shape[0], 3).clone()
        self.register_buffer("R0", T[:, :3, :3].detach().clone())
        self.register_buffer("pivot", pivot)
        self.omega = torch.nn.Parameter(torch.zeros(T.shape[0], 3, dtype=T.dtype, device=T.device))
        t_c = (T[:, :3, :3] @ pivot[:, :, None])[..., 0] + T[:, :3, 3]
        self.t_c = torch.nn.Parameter(t_c.detach().clone())

    def rotation(self) -> Tensor:
        """``R_camera_base`` ``[B, 3, 3]``."""
        return rotation_with_increment(self.omega, self.R0)

    def forward(self) -> Tensor:
        """``T_camera_base`` ``[B, 4, 4]`` (differentiable w.r.t. ``omega`` and ``t_c``)."""
        return camera_from_pivot(self.omega, self.t_c, self.R0, self.pivot)[0]

    @torch.no_grad()
    def rebase(self) -> None:
        """Fold ``omega`` into ``R0`` and reset it to 0 (the pose is unchanged; call between optimiser stages)."""
        self.R0.copy_(self.rotation())
        self.omega.zero_()

    @torch.no_grad()
    def select(self, index: Tensor) -> "CameraPoseParam":
        """A new parametrisation holding only poses ``index`` (for pruning hypotheses)."""
        return CameraPoseParam(self.forward()[index], self.pivot[index])
