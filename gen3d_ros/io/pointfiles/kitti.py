"""KITTI velodyne ``.bin`` scans: float32 little-endian ``x y z intensity`` rows, no header."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gen3d_ros.io.pointcloud2 import CloudArrays
from gen3d_ros.io.pointfiles.checks import PointFileError, check_count, check_points, finite_cloud


def read_kitti_bin(path: Path, max_points: int) -> CloudArrays:
    """The KITTI scan at ``path`` (an existing file): x y z and ``intensity``, at most ``max_points`` points."""
    size = path.stat().st_size
    if size % 16:
        raise PointFileError(
            f"KITTI .bin {path} has {size} bytes, not a multiple of 16 (float32 x y z intensity per point): "
            f"truncated or not a KITTI scan"
        )
    n = size // 16
    check_count("KITTI .bin", path, n, max_points)
    raw = np.fromfile(path, dtype="<f4", count=4 * n)
    if raw.size != 4 * n:  # the file shrank between stat and read
        raise PointFileError(f"KITTI .bin {path} changed while it was read ({raw.size * 4} of {size} bytes)")
    rows = raw.reshape(-1, 4).astype(np.float32, copy=False)
    return finite_cloud(rows[:, :3], {"intensity": np.ascontiguousarray(rows[:, 3])})


def write_kitti_bin(path: str | Path, points: np.ndarray, intensity: np.ndarray | None = None) -> None:
    """Write KITTI velodyne ``.bin`` atomically: float32 little-endian ``x y z intensity`` rows.

    points: (N, 3) metres; intensity: (N,) (default zeros), stored as float32. A ``.bin`` has no room for a
    gen3d_ros marker, so ``--force`` never replaces one (see :mod:`gen3d_ros.outputs`).
    """
    from gen3d_ros.outputs import write_bytes

    points = check_points(points)
    rows = np.zeros((len(points), 4), dtype="<f4")
    rows[:, :3] = points
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != (len(points),):
            raise ValueError(f"intensity must be ({len(points)},), got shape {intensity.shape}")
        rows[:, 3] = intensity
    write_bytes(Path(path), rows.tobytes())
