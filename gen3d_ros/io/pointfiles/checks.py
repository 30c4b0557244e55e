"""What every point file reader and writer of :mod:`gen3d_ros.io.pointfiles` checks, and the cloud each reader
returns: the error, the point-count and header-size limits, the (N, 3) input check of the writers, and the
:class:`~gen3d_ros.io.pointcloud2.CloudArrays` with non-finite points dropped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gen3d_ros.io.pointcloud2 import CloudArrays

#: Default cap on the points one file may hold: a 128-beam lidar sweep has ~0.3 M points, a large merged map
#: some millions; 20 M points (x y z float32: 240 MB) is far above either and far below what a corrupt header
#: can claim. Pass ``max_points`` to read bigger files.
DEFAULT_MAX_POINTS = 20_000_000
#: Headers (PCD, PLY) are small; a file whose header does not end within this many bytes is not one of them.
HEADER_LIMIT = 1 << 20


class PointFileError(ValueError):
    """A point cloud file is malformed, truncated or over ``max_points``; the message names the file, the
    problem and the values involved."""


def finite_cloud(points: np.ndarray, fields: dict[str, np.ndarray],
                 organized: tuple[int, int] | None = None) -> CloudArrays:
    """The cloud a reader returns: ``points`` as (N, 3) float32 metres and ``fields`` (name -> (N, ...)) with the
    rows of non-finite points removed and counted in ``dropped``; ``organized`` is ``(height, width)`` or None."""
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 range -> inf -> dropped, counted
        points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    finite = np.isfinite(points).all(axis=1)
    dropped = int(finite.size - np.count_nonzero(finite))
    if dropped:
        points = points[finite]
        fields = {name: values[finite] for name, values in fields.items()}
    return CloudArrays(points=points, fields=fields, dropped=dropped, organized_shape=organized)


def check_max_points(max_points: int) -> int:
    """``max_points`` as an int; ValueError unless it is a non-negative integer."""
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 0:
        raise ValueError(f"max_points must be a non-negative integer, got {max_points!r}")
    return int(max_points)


def check_count(what: str, path: Path, count: int, max_points: int) -> None:
    """:class:`PointFileError` when the ``count`` points a ``what`` file claims exceed ``max_points``."""
    if count > max_points:
        raise PointFileError(
            f"{what} {path} holds {count} points, more than max_points={max_points}; if the file really is "
            f"that big, pass a larger max_points (it is a guard against corrupt headers)"
        )


def check_points(points: np.ndarray) -> np.ndarray:
    """A writer's ``points`` as an array; ValueError unless it is numeric (N, 3)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "fiu":
        raise ValueError(f"points must be a numeric (N, 3) array, got shape {points.shape} dtype {points.dtype}")
    return points


def extra_columns(table: np.ndarray) -> dict[str, np.ndarray]:
    """Fields of the columns of an (N, 3+) table after x y z: a 4th alone is ``intensity``, else ``col3``, ..."""
    extra = table.shape[1] - 3
    if extra == 1:
        return {"intensity": np.ascontiguousarray(table[:, 3])}
    return {f"col{i}": np.ascontiguousarray(table[:, i]) for i in range(3, table.shape[1])}
