"""Points on the robot's surface, posed by forward kinematics: what the silhouette search projects instead of
rendering, and the centre the camera parametrisation rotates about."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gen3d_ros.robot.meshes import sample_surface

PIVOT_POINTS = 512
"""Surface samples whose centroid is the camera's rotation pivot (a fixed prefix, so the pivot never depends on
how many points the search uses)."""


class PosedSurface:
    """``n`` points sampled uniformly on the robot's visual meshes (in their links' frames, seeded), posed at any
    joint values. The samples are i.i.d., so any prefix is itself a uniform sample."""

    def __init__(self, robot, fk, n: int, device: torch.device) -> None:
        samples = sample_surface(robot, max(PIVOT_POINTS, n), np.random.default_rng(0))
        self.fk = fk
        self.points = torch.as_tensor(samples.points, dtype=torch.float32, device=device)  # [P, 3] link frames, m
        self.link = torch.as_tensor(samples.link_index, device=device)  # [P] index into fk.link_names

    def posed(self, q: Tensor, n: int | None = None) -> Tensor:
        """``[B, P, 3]`` surface points (base frame, metres) posed at ``q [B, J]``; the first ``n`` samples only."""
        pts, link = (self.points, self.link) if n is None else (self.points[:n], self.link[:n])
        T = self.fk(q)[:, link]  # [B, P, 4, 4]
        return (T[..., :3, :3] @ pts[None, :, :, None])[..., 0] + T[..., :3, 3]

    def pivot(self, q: Tensor) -> Tensor:
        """``[B, 3]`` centroid of the first :data:`PIVOT_POINTS` posed points (base frame, metres): the camera's
        rotation pivot."""
        return self.posed(q, PIVOT_POINTS).mean(dim=1)

    def pivot_of(self, posed: Tensor, q: Tensor) -> Tensor:
        """:meth:`pivot` from already posed points ``[B, P, 3]`` (no second FK when they hold the pivot's prefix)."""
        return posed[:, :PIVOT_POINTS].mean(dim=1) if posed.shape[1] >= PIVOT_POINTS else self.pivot(q)


__all__ = ["PIVOT_POINTS", "PosedSurface"]
