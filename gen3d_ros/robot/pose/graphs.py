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

GAUSSIAN_KEYS = ("means", "quats", "scales", "opacities", "colors")


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


__all__ = ["GAUSSIAN_KEYS", "PoseGraphs"]
