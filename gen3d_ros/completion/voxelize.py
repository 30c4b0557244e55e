"""Points <-> sparse voxel indices, and box/cylinder crops. Pure numpy.

A voxel grid is given by ``voxel_size`` (metres, cubic voxels) and ``origin`` ((3,) metres, the corner of voxel
(0, 0, 0)); a point ``p`` lies in voxel ``floor((p - origin) / voxel_size)``. Voxel ``i`` covers
``[origin + i * voxel_size, origin + (i + 1) * voxel_size)`` and its centre is ``origin + (i + 0.5) * voxel_size``.
Indices are int32; a set of occupied voxels is an ``(M, 3)`` int32 array of unique rows, sorted
lexicographically (x, then y, then z), which is what :func:`voxelize` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_INT32_MIN = np.iinfo(np.int32).min
_INT32_MAX = np.iinfo(np.int32).max
_DENSE_MASK_CELLS = 1 << 22  # extents up to this many cells are deduplicated with a dense mask, not a sort


def _as_points(points: np.ndarray, name: str = "points") -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {arr.shape}")
    return arr


def _as_origin(origin: np.ndarray | Sequence[float] | None) -> np.ndarray:
    if origin is None:
        return np.zeros(3, dtype=np.float64)
    arr = np.asarray(origin, dtype=np.float64).reshape(-1)
    if arr.shape != (3,):
        raise ValueError(f"origin must have 3 values (metres), got shape {np.shape(origin)}")
    return arr


def _check_voxel_size(voxel_size: float) -> float:
    size = float(voxel_size)
    if not np.isfinite(size) or size <= 0.0:
        raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size!r}")
    return size


def _pack(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packs (M, 3) integer indices into int64 keys that sort like the rows (x, y, z).

    Returns ``keys (M,) int64``, ``lo (3,) int64`` and ``span (3,) int64`` (what :func:`_unpack` needs).
    """
    if indices.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(3, np.int64), np.ones(3, np.int64)
    cols = np.ascontiguousarray(indices.T, dtype=np.int64)  # (3, M): contiguous rows reduce fast
    lo = cols.min(axis=1)
    span = cols.max(axis=1) - lo + 1
    if float(span[0]) * float(span[1]) * float(span[2]) >= 2.0**62:
        raise ValueError(f"voxel index extent {span.tolist()} is too large to pack into int64 keys")
    keys = cols[0] - lo[0]
    keys *= span[1]
    keys += cols[1] - lo[1]
    keys *= span[2]
    keys += cols[2] - lo[2]
    return keys, lo, span


def _unpack(keys: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack`: (M,) int64 keys -> (M, 3) int32 indices."""
    rest, z = np.divmod(keys, span[2])
    x, y = np.divmod(rest, span[1])
    out = np.empty((keys.shape[0], 3), dtype=np.int32)
    out[:, 0] = x + lo[0]
    out[:, 1] = y + lo[1]
    out[:, 2] = z + lo[2]
    return out


def point_indices(
    points: np.ndarray, voxel_size: float, origin: np.ndarray | Sequence[float] | None = None
) -> np.ndarray:
    """Voxel index of every point (not deduplicated).

    Args:
        points: (N, 3) metres, any float dtype.
        voxel_size: edge length of a voxel, metres.
        origin: (3,) metres, corner of voxel (0, 0, 0); ``None`` means (0, 0, 0).

    Returns:
        (N, 3) int32, ``floor((points - origin) / voxel_size)``.

    Raises:
        ValueError: if a point is not finite or its index does not fit int32.
    """
    pts = _as_points(points)
    size = _check_voxel_size(voxel_size)
    org = _as_origin(origin)
    if pts.shape[0] == 0:
        return np.zeros((0, 3), np.int32)
    scaled = np.floor((pts.astype(np.float64, copy=False) - org) / size)
    if not np.all(np.isfinite(scaled)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(scaled), axis=1))[0])
        raise ValueError(f"points[{bad}] = {pts[bad].tolist()} is not finite; drop NaN/inf points first")
    if scaled.min() < _INT32_MIN or scaled.max() > _INT32_MAX:
        raise ValueError(
            f"voxel indices span [{scaled.min():.0f}, {scaled.max():.0f}], outside int32; "
            f"use a larger voxel_size (got {size}) or an origin nearer the points"
        )
    return scaled.astype(np.int32)


def unique_voxels(indices: np.ndarray, *, return_inverse: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Unique rows of (N, 3) integer voxel indices, sorted lexicographically (x, y, z).

    Returns (M, 3) int32, plus (N,) int64 ``inverse`` (``unique[inverse] == indices``) if asked.
    """
    idx = _as_points(indices, "indices")
    keys, lo, span = _pack(idx)
    cells = int(np.prod(span))
    if keys.shape[0] and cells <= max(8 * keys.shape[0], _DENSE_MASK_CELLS):
        # bounded extent: mark a dense mask instead of sorting, O(N + cells)
        mask = np.zeros(cells, dtype=bool)
        mask[keys] = True
        ukeys = np.flatnonzero(mask)
        if return_inverse:
            rank = np.cumsum(mask, dtype=np.int64) - 1
            return _unpack(ukeys, lo, span), rank[keys]
        return _unpack(ukeys, lo, span)
    if return_inverse:
        ukeys, inverse = np.unique(keys, return_inverse=True)
        return _unpack(ukeys, lo, span), inverse.reshape(-1)
    return _unpack(np.unique(keys), lo, span)


def voxelize(
    points: np.ndarray,
    voxel_size: float,
    origin: np.ndarray | Sequence[float] | None = None,
    *,
    return_inverse: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Occupied voxels of a point cloud.

    Args:
        points: (N, 3) metres, in the frame the grid is defined in.
        voxel_size: edge length of a voxel, metres.
        origin: (3,) metres, corner of voxel (0, 0, 0) in the same frame; ``None`` means (0, 0, 0).
        return_inverse: also return, for each point, the row of its voxel in the result.

    Returns:
        (M, 3) int32 unique voxel indices ``floor((p - origin) / voxel_size)``, sorted lexicographically;
        with ``return_inverse``, also (N,) int64 row of each point's voxel.
    """
    return unique_voxels(point_indices(points, voxel_size, origin), return_inverse=return_inverse)


def voxel_centers(
    indices: np.ndarray, voxel_size: float, origin: np.ndarray | Sequence[float] | None = None
) -> np.ndarray:
    """Centres of voxels: (M, 3) int indices -> (M, 3) float32 metres, ``origin + (i + 0.5) * voxel_size``."""
    idx = _as_points(indices, "indices")
    size = _check_voxel_size(voxel_size)
    org = _as_origin(origin)
    return (org + (idx.astype(np.float64) + 0.5) * size).astype(np.float32)


def isin_voxels(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which rows of ``query`` (M, 3) int occur in ``reference`` (K, 3) int -> (M,) bool."""
    q = _as_points(query, "query").astype(np.int64, copy=False)
    r = _as_points(reference, "reference").astype(np.int64, copy=False)
    if q.shape[0] == 0 or r.shape[0] == 0:
        return np.zeros(q.shape[0], dtype=bool)
    keys, lo, span = _pack(np.concatenate([q, r], axis=0))
    cells = int(np.prod(span))
    if cells <= max(8 * keys.shape[0], _DENSE_MASK_CELLS):
        mask = np.zeros(cells, dtype=bool)
        mask[keys[q.shape[0]:]] = True
        return mask[keys[: q.shape[0]]]
    return np.isin(keys[: q.shape[0]], keys[q.shape[0]:])


def crop_mask(
    points: np.ndarray,
    center: np.ndarray | Sequence[float] | None = None,
    *,
    half_extent_m: float | Sequence[float] | np.ndarray | None = None,
    radius_m: float | None = None,
    z_range_m: tuple[float, float] | None = None,
) -> np.ndarray:
    """Which points lie in an axis-aligned box or an upright cylinder around ``center``.

    Args:
        points: (N, 3) metres.
        center: (3,) metres (``None``: origin). All bounds are relative to it.
        half_extent_m: box half sizes: a scalar (cube), (2,) for x, y or (3,) for x, y, z. The box is half-open,
            ``center - h <= p < center + h``, like voxel cells.
        radius_m: horizontal radius of an upright cylinder, ``|p.xy - center.xy| <= radius_m``.
        z_range_m: (lo, hi), keeps ``center.z + lo <= p.z < center.z + hi``; overrides a z half extent.

    Returns:
        (N,) bool.
    """
    pts = _as_points(points)
    c = _as_origin(center)
    rel = pts.astype(np.float64, copy=False) - c
    mask = np.ones(pts.shape[0], dtype=bool)
    if half_extent_m is not None:
        h = np.asarray(half_extent_m, dtype=np.float64).reshape(-1)
        if h.size == 1:
            h = np.repeat(h, 3)
        if h.size not in (2, 3) or np.any(h <= 0):
            raise ValueError(f"half_extent_m must be a positive scalar, (2,) or (3,), got {half_extent_m!r}")
        axes = 2 if (h.size == 2 or z_range_m is not None) else 3
        for a in range(axes):
            mask &= (rel[:, a] >= -h[a]) & (rel[:, a] < h[a])
    if radius_m is not None:
        if radius_m <= 0:
            raise ValueError(f"radius_m must be positive, got {radius_m!r}")
        mask &= rel[:, 0] ** 2 + rel[:, 1] ** 2 <= float(radius_m) ** 2
    if z_range_m is not None:
        lo, hi = float(z_range_m[0]), float(z_range_m[1])
        if not lo < hi:
            raise ValueError(f"z_range_m must be (lo, hi) with lo < hi, got {z_range_m!r}")
        mask &= (rel[:, 2] >= lo) & (rel[:, 2] < hi)
    return mask


def crop_points(
    points: np.ndarray,
    center: np.ndarray | Sequence[float] | None = None,
    *,
    half_extent_m: float | Sequence[float] | np.ndarray | None = None,
    radius_m: float | None = None,
    z_range_m: tuple[float, float] | None = None,
) -> np.ndarray:
    """The points inside a box or cylinder around ``center``; see :func:`crop_mask` for the arguments."""
    pts = _as_points(points)
    return pts[crop_mask(pts, center, half_extent_m=half_extent_m, radius_m=radius_m, z_range_m=z_range_m)]


def crop_voxels(indices: np.ndarray, grid_shape: Sequence[int] | np.ndarray) -> np.ndarray:
    """(M,) bool: which voxel indices lie in the grid ``[0, grid_shape)`` on every axis."""
    idx = _as_points(indices, "indices")
    shape = np.asarray(grid_shape, dtype=np.int64).reshape(3)
    return np.all((idx >= 0) & (idx < shape), axis=1)
