"""The one voxel grid of scene completion: data generation, training, inference and the node all use it.

A :class:`VoxelGrid` is ``voxel_size`` (metres, cubic voxels), ``origin`` ((3,) metres, the corner of voxel
(0, 0, 0) in the frame the points are in — the sensor frame of a sweep) and ``shape`` ((3,) voxels per axis).
Point ``p`` lies in voxel ``floor((p - origin) / voxel_size)`` (the convention of :mod:`.voxelize`); voxel ``i``
is inside the grid when ``0 <= i < shape`` on every axis; its centre is ``origin + (i + 0.5) * voxel_size``.

Trained models store their grid in their checkpoint (``"grid": grid.to_dict()``); checkpoints written before
that carry it in their data config (``train_config.data``: ``voxel_size_m``, ``half_extent_m``, ``z_range_m``),
which :meth:`VoxelGrid.from_data` reads without the data generator.

:func:`prepare_sweep` is the one place where a sweep's points are cleaned before voxelisation: non-finite rows
dropped, a cylinder/height crop, a random subsample above a point budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gen3d_ros.completion.voxelize import point_indices, unique_voxels, voxel_centers


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """A bounded voxel grid; see the module docstring. Immutable; compare with :meth:`same_as`."""

    voxel_size: float
    origin: np.ndarray
    shape: np.ndarray

    def __post_init__(self) -> None:
        size = float(self.voxel_size)
        origin = np.asarray(self.origin, np.float64).reshape(-1)
        shape = np.asarray(self.shape, np.int64).reshape(-1)
        if not (np.isfinite(size) and size > 0):
            raise ValueError(f"VoxelGrid.voxel_size must be a positive number of metres, got {self.voxel_size!r}")
        if origin.shape != (3,) or not np.isfinite(origin).all():
            raise ValueError(f"VoxelGrid.origin must be 3 finite numbers (metres), got {self.origin!r}")
        if shape.shape != (3,) or (shape < 1).any():
            raise ValueError(f"VoxelGrid.shape must be 3 positive voxel counts, got {self.shape!r}")
        object.__setattr__(self, "voxel_size", size)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "shape", shape)

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_extent(cls, voxel_size: float, half_extent_m: Sequence[float], z_range_m: Sequence[float]) -> "VoxelGrid":
        """The box ``[-hx, hx) x [-hy, hy) x [z_lo, z_hi)`` metres around the sensor; the extents must be
        multiples of ``voxel_size``."""
        hx, hy = (float(v) for v in half_extent_m)
        lo, hi = (float(v) for v in z_range_m)
        if min(hx, hy) <= 0 or not lo < hi:
            raise ValueError(f"need positive half extents and z_lo < z_hi, got {half_extent_m!r}, {z_range_m!r}")
        extent = np.array([2 * hx, 2 * hy, hi - lo])
        cells = extent / float(voxel_size)
        if np.abs(cells - np.round(cells)).max() > 1e-6:
            raise ValueError(f"extent {extent.tolist()} m is not a multiple of the voxel size {voxel_size} m")
        return cls(float(voxel_size), np.array([-hx, -hy, lo]), np.round(cells).astype(np.int64))

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "VoxelGrid":
        """The grid of a completion data config dict (``voxel_size_m``, ``half_extent_m``, ``z_range_m``), with the
        data generator's defaults (0.2 m, 16 m x 16 m, -3..5 m) for missing keys."""
        return cls.from_extent(float(data.get("voxel_size_m", 0.2)), data.get("half_extent_m", (16.0, 16.0)),
                               data.get("z_range_m", (-3.0, 5.0)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VoxelGrid":
        """Inverse of :meth:`to_dict`."""
        return cls(float(data["voxel_size"]), np.asarray(data["origin"], np.float64),
                   np.asarray(data["shape"], np.int64))

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for checkpoints, JSON): ``voxel_size``, ``origin`` (3 floats), ``shape`` (3 ints)."""
        return {"voxel_size": self.voxel_size, "origin": [float(v) for v in self.origin],
                "shape": [int(v) for v in self.shape]}

    def refined(self, scale: int) -> "VoxelGrid":
        """The same box with voxels ``scale`` times smaller (the fine grid under a coarse one)."""
        return VoxelGrid(self.voxel_size / scale, self.origin, self.shape * int(scale))

    def with_half_extent(self, half_extent_m: float) -> "VoxelGrid":
        """The box ``[-r, r) x [-r, r)`` metres around the sensor with this grid's voxel and z range: a model
        trained on one region applied to a larger one (its kernels are local; the BEV planner is fully
        convolutional). ``r`` is rounded up to whole voxels."""
        r = float(half_extent_m)
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"half extent must be a positive number of metres, got {half_extent_m!r}")
        half = int(np.ceil(r / self.voxel_size - 1e-9))
        origin = np.array([-half * self.voxel_size, -half * self.voxel_size, self.origin[2]])
        return VoxelGrid(self.voxel_size, origin, np.array([2 * half, 2 * half, int(self.shape[2])]))

    def same_as(self, other: "VoxelGrid", tol: float = 1e-6) -> bool:
        return (abs(self.voxel_size - other.voxel_size) <= tol and bool(np.allclose(self.origin, other.origin,
                                                                                      atol=tol))
                and bool((self.shape == other.shape).all()))

    # ------------------------------------------------------------------------------------------ geometry

    @property
    def extent(self) -> np.ndarray:
        """(3,) float64 size of the box in metres."""
        return self.shape * self.voxel_size

    @property
    def bounds(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``((0, 0, 0), shape)``: the index bounds chains are cropped to."""
        return (0, 0, 0), tuple(int(v) for v in self.shape)  # type: ignore[return-value]

    def contains(self, cells: np.ndarray) -> np.ndarray:
        """(M,) bool: which (M, 3) integer cells lie inside the grid."""
        cells = np.asarray(cells)
        return ((cells >= 0) & (cells < self.shape)).all(axis=1)

    def cell_indices(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) int32 voxel of every point (not deduplicated, not cropped); points must be finite."""
        return point_indices(points, self.voxel_size, self.origin)

    def voxelize(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) int32 unique occupied cells of ``points`` (N, 3) metres inside the grid, sorted (x, y, z).
        Points outside the box (also non-finite or huge ones) are ignored."""
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        with np.errstate(invalid="ignore"):
            near = ((pts >= self.origin - self.voxel_size) & (pts < self.origin + self.extent + self.voxel_size)).all(1)
        idx = self.cell_indices(pts[near])
        return unique_voxels(idx[self.contains(idx)])

    def centres(self, cells: np.ndarray) -> np.ndarray:
        """(M, 3) float32 voxel centres, metres, of (M, 3) integer cells."""
        return voxel_centers(cells, self.voxel_size, self.origin)

    def __repr__(self) -> str:
        return (f"VoxelGrid({self.voxel_size:g} m, origin {self.origin.round(3).tolist()} m, "
                f"shape {self.shape.tolist()})")


@dataclass
class PreparedSweep:
    """A sweep after :func:`prepare_sweep`: ``points`` (N, 3) metres, sensor frame; ``dropped``: rows
    removed (non-finite, outside the crop, over the point budget)."""

    points: np.ndarray
    dropped: int


def prepare_sweep(points: np.ndarray, *, roi_radius_m: float = 0.0, z_range_m: tuple[float, float] | None = None,
                  max_points: int = 0, rng: np.random.Generator | None = None, dropped: int = 0) -> PreparedSweep:
    """Clean a sweep once before it is voxelised: drop non-finite rows, keep the upright cylinder
    ``hypot(x, y) <= roi_radius_m`` (0: no crop) and ``z_lo <= z <= z_hi``, then subsample at random to
    ``max_points`` (0: no limit). ``points``: (N, 3) metres, sensor frame (float64 stays float64, anything else
    becomes float32); ``dropped``: rows the caller removed already (counted on)."""
    points = np.asarray(points)
    if points.dtype not in (np.float32, np.float64):
        points = points.astype(np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    keep = np.isfinite(points).all(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):  # huge finite values simply fall outside the crop
        if roi_radius_m > 0:
            keep &= np.hypot(points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)) <= roi_radius_m
        if z_range_m is not None:
            keep &= (points[:, 2] >= z_range_m[0]) & (points[:, 2] <= z_range_m[1])
    out = points[keep]
    if max_points and len(out) > max_points:
        rng = rng if rng is not None else np.random.default_rng(0)
        out = out[rng.choice(len(out), max_points, replace=False)]
    return PreparedSweep(out, int(dropped + len(points) - len(out)))
