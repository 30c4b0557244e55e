"""Whitespace text point clouds (``.xyz`` / ``.txt`` / ``.dat``, optionally ``.bz2`` / ``.gz`` / ``.xz``
compressed), including octomap's scan-graph logs (``NODE x y z roll pitch yaw`` lines, each followed by that
scan's ``x y z`` lines)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gen3d_ros.io.pointcloud2 import CloudArrays
from gen3d_ros.io.pointfiles.checks import (DEFAULT_MAX_POINTS, PointFileError, check_count, check_max_points,
                                            extra_columns, finite_cloud)

TEXT_SUFFIXES = (".xyz", ".txt", ".dat")
COMPRESSORS: dict[str, Callable[..., Any]] = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
#: Text file suffixes, plain and compressed.
TEXT_FILE_SUFFIXES = (*TEXT_SUFFIXES, *(f"{text}{comp}" for text in TEXT_SUFFIXES for comp in COMPRESSORS))
#: Bytes of text allowed per point (a ``x y z`` row with colours and comments is well under 100 bytes).
_TEXT_BYTES_PER_POINT = 256


def suffix_of(path: Path) -> str:
    """The lower-case format suffix of ``path``: ``.pcd``, or ``.xyz.gz`` for a compressed text file."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in COMPRESSORS:
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1] if suffixes else ""


@dataclass
class ScanNode:
    """One scan of an octomap scan-graph log.

    pose: (6,) float64 ``x y z roll pitch yaw`` (metres, radians) of the sensor in the common frame;
    points: (N, 3) float32 metres in the sensor frame (non-finite rows removed).
    """

    pose: np.ndarray
    points: np.ndarray

    def transform(self) -> np.ndarray:
        """(4, 4) T_common_sensor: rotation Rz(yaw) Ry(pitch) Rx(roll), then translation (octomath Pose6D)."""
        x, y, z, roll, pitch, yaw = (float(v) for v in self.pose)
        cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
        T = np.eye(4)
        T[:3, :3] = [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
        T[:3, 3] = (x, y, z)
        return T


def _open_text(path: Path, suffix: str, max_points: int) -> str:
    """The file's text (decompressed), refusing more than ``_TEXT_BYTES_PER_POINT * max_points`` bytes: a
    1 kB .gz can expand to gigabytes."""
    limit = _TEXT_BYTES_PER_POINT * max(max_points, 1)
    opener = COMPRESSORS.get(suffix[suffix.rfind("."):]) if suffix.count(".") > 1 else None
    too_big = (f"{path} holds more than {limit} bytes of text (max_points={max_points} x "
               f"{_TEXT_BYTES_PER_POINT} bytes); pass a larger max_points if it really is a point cloud that big")
    if opener is None:
        if path.stat().st_size > limit:
            raise PointFileError(too_big)
        return path.read_bytes().decode("utf-8", errors="replace")
    chunks, size = [], 0
    try:
        with opener(path, "rb") as stream:
            # In chunks: read(limit + 1) would allocate the whole limit (gigabytes) before reading a byte.
            while size <= limit:
                chunk = stream.read(min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:  # gzip.BadGzipFile: an OSError
        raise PointFileError(f"cannot decompress {path} ({suffix}): {exc}: corrupt or truncated") from exc
    if size > limit:
        raise PointFileError(too_big)
    return b"".join(chunks).decode("utf-8", errors="replace")


_NODE = re.compile(r"^[ \t]*NODE\b", re.MULTILINE)


def _parse_table(lines: list[str] | str, path: Path, max_points: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ee]mpty input file.*")
            warnings.filterwarnings("ignore", message=".*no data.*")
            # No max_rows: numpy allocates max_rows rows up front (measured: 458 MB for 20 M rows of 3 values);
            # the text itself is already capped by _open_text.
            table = np.loadtxt(io.StringIO(lines) if isinstance(lines, str) else lines,
                               dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        raise PointFileError(f"cannot parse {path} as rows of numbers 'x y z ...': {exc}") from exc
    if table.size == 0:
        return np.zeros((0, 3))
    if table.shape[1] < 3:
        raise PointFileError(f"{path} has {table.shape[1]} column(s); point rows need at least x y z")
    check_count("text file", path, len(table), max_points)
    return table


def _parse_scan_graph(text: str, path: Path, max_points: int) -> list[ScanNode]:
    nodes: list[tuple[np.ndarray, list[str]]] = []
    total = 0
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("NODE"):
            values = line.split()[1:]
            try:
                pose = np.array([float(v) for v in values[:6]], dtype=np.float64)
            except ValueError:
                pose = np.zeros(0)
            if pose.shape != (6,):
                raise PointFileError(f"{path}:{number}: expected 'NODE x y z roll pitch yaw', got {line[:80]!r}")
            if not np.isfinite(pose).all():
                raise PointFileError(f"{path}:{number}: NODE pose {pose.tolist()} is not finite")
            nodes.append((pose, []))
        elif not nodes:
            raise PointFileError(f"{path}:{number}: point line before the first NODE line in a scan-graph log")
        else:
            total += 1
            check_count("scan graph", path, total, max_points)
            nodes[-1][1].append(line.replace(",", " "))
    scans = []
    for pose, lines in nodes:
        table = _parse_table(lines, path, max_points) if lines else np.zeros((0, 3))
        with np.errstate(over="ignore", invalid="ignore"):
            points = table[:, :3].astype(np.float32)
        scans.append(ScanNode(pose, points[np.isfinite(points).all(axis=1)]))
    return scans


def read_scan_graph(path: str | Path, *, max_points: int = DEFAULT_MAX_POINTS) -> list[ScanNode]:
    """Read an octomap scan-graph log (``NODE x y z roll pitch yaw`` + point lines; text, optionally compressed).

    Returns one :class:`ScanNode` per NODE, points in that scan's sensor frame. Raises FileNotFoundError,
    PointFileError (malformed lines, non-finite poses, more than ``max_points`` point lines, corrupt
    compression) or ValueError (not a text file).
    """
    path = Path(path)
    max_points = check_max_points(max_points)
    if not path.is_file():
        raise FileNotFoundError(f"scan graph file not found: {path}")
    suffix = suffix_of(path)
    if suffix not in TEXT_FILE_SUFFIXES:
        raise ValueError(f"a scan graph is a text file ({', '.join(TEXT_FILE_SUFFIXES)}), got {path}")
    text = _open_text(path, suffix, max_points)
    if not _NODE.search(text):
        raise PointFileError(f"{path} has no 'NODE x y z roll pitch yaw' lines; read it with read_points()")
    return _parse_scan_graph(text, path, max_points)


def read_text_cloud(path: Path, suffix: str, max_points: int) -> CloudArrays:
    """The text file at ``path`` (``suffix`` from :func:`suffix_of`) as :class:`CloudArrays`: rows ``x y z ...``, or a
    scan graph's scans moved into the common frame; at most ``max_points`` points."""
    text = _open_text(path, suffix, max_points)
    if _NODE.search(text):
        scans = _parse_scan_graph(text, path, max_points)
        total = sum(len(scan.points) for scan in scans)
        chunks = []
        for scan in scans:
            T = scan.transform()
            chunks.append((scan.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(np.float32))
        points = np.concatenate(chunks) if chunks else np.zeros((0, 3), np.float32)
        # Non-finite points were already removed per scan; count them against the raw point lines.
        raw_lines = sum(1 for line in text.splitlines()
                        if line.strip() and not line.strip().startswith(("#", "NODE")))
        cloud = finite_cloud(points, {})
        cloud.dropped += raw_lines - total
        return cloud
    table = _parse_table(text.replace(",", " "), path, max_points)
    return finite_cloud(table[:, :3], extra_columns(table) if table.shape[1] > 3 else {})
