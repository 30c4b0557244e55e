"""Point cloud files <-> :class:`~gen3d_ros.io.pointcloud2.CloudArrays` (no ROS involved).

Read: KITTI ``.bin``, PCL ``.pcd`` (ascii, binary, binary_compressed), ``.ply`` (plyfile), ``.npy``, whitespace
text ``.xyz``/``.txt``/``.dat`` (optionally ``.bz2``/``.gz``/``.xz`` compressed), including octomap's scan-graph log
format (``NODE x y z roll pitch yaw`` lines, each followed by that scan's ``x y z`` lines).
Write: ``.ply``, ``.pcd``, KITTI ``.bin``, atomically and marked as gen3d_ros outputs (:mod:`gen3d_ros.outputs`).

Coordinates are metres in the file's own frame. Non-finite points are dropped and counted in ``dropped``.
Arrays returned here are fresh and writable. Colours are returned as the PCL/rviz packed ``rgb`` field
(uint32 ``0x00RRGGBB``; see :func:`~gen3d_ros.io.pointcloud2.unpack_rgb`).

Malformed input: every reader checks what a header claims (point count x record size) against the bytes the
file really has *before* allocating anything, and refuses more than ``max_points`` points, so a corrupt or
hostile header costs an error message, not gigabytes. All such failures raise :class:`PointFileError` (a
``ValueError``) naming the file, what is wrong, the values involved and what to do.

The formats live in one module each (``kitti``, ``pcd``, ``ply``, ``npy``, ``text``; shared checks in ``checks``);
this package's names are the API.
"""

from __future__ import annotations

from pathlib import Path

from gen3d_ros.io.pointcloud2 import CloudArrays
from gen3d_ros.io.pointfiles.checks import DEFAULT_MAX_POINTS, PointFileError, check_max_points
from gen3d_ros.io.pointfiles.kitti import read_kitti_bin, write_kitti_bin
from gen3d_ros.io.pointfiles.npy import read_npy
from gen3d_ros.io.pointfiles.pcd import lzf_decompress, read_pcd, write_pcd
from gen3d_ros.io.pointfiles.ply import read_ply, write_ply
from gen3d_ros.io.pointfiles.text import TEXT_FILE_SUFFIXES, ScanNode, read_scan_graph, read_text_cloud, suffix_of

__all__ = ["DEFAULT_MAX_POINTS", "SUPPORTED_SUFFIXES", "PointFileError", "ScanNode", "lzf_decompress", "read_points",
           "read_scan_graph", "write_kitti_bin", "write_pcd", "write_ply"]

SUPPORTED_SUFFIXES = (".bin", ".pcd", ".ply", ".npy", *TEXT_FILE_SUFFIXES)


def read_points(path: str | Path, *, max_points: int = DEFAULT_MAX_POINTS) -> CloudArrays:
    """Read a point cloud file into :class:`CloudArrays` (points (N, 3) float32 metres, file frame).

    Formats by extension:
        ``.bin``: KITTI velodyne, float32 x y z intensity -> ``fields["intensity"]``.
        ``.pcd``: ascii, binary or binary_compressed; every field kept in its dtype (``rgb`` stays as PCL
            wrote it, usually float32 bits), count > 1 fields as (N, count), organised clouds keep
            ``organized_shape``.
        ``.ply``: ascii or binary, via plyfile; the ``vertex`` element is the cloud (other elements, e.g. faces,
            are read and checked but not returned). ``red/green/blue`` -> ``fields["rgb"]`` packed uint32,
            ``nx/ny/nz`` -> ``fields["normals"]`` (N, 3) float32, other scalar vertex properties by name.
        ``.npy``: (N, 3+) numeric array, or a structured array with x, y, z fields (other names kept).
        ``.xyz``/``.txt``/``.dat`` (+ ``.bz2``/``.gz``/``.xz``): whitespace (or comma) separated rows ``x y z ...``,
            ``#`` comments. Extra columns: a 4th alone is ``intensity``; otherwise ``col3``, ``col4``, ...
            Files with ``NODE x y z roll pitch yaw`` lines are octomap scan graphs: each scan's points are in
            its NODE's sensor frame and are transformed into the common frame, as octomap's graph2tree does
            (use :func:`read_scan_graph` for the per-scan points and poses).

    Args:
        max_points: refuse files holding more points than this (counted before non-finite ones are dropped;
            text files may also hold at most ``256 * max_points`` bytes of text, decompressed).

    Raises:
        FileNotFoundError: the path does not exist.
        PointFileError: (a ValueError) a malformed, truncated or corrupt file, or more than ``max_points``
            points; the message names the file and the problem.
        ValueError: an unsupported extension (the message lists the supported ones) or a bad ``max_points``.
    """
    path = Path(path)
    max_points = check_max_points(max_points)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    suffix = suffix_of(path)
    if suffix == ".bin":
        return read_kitti_bin(path, max_points)
    if suffix == ".pcd":
        return read_pcd(path, max_points)
    if suffix == ".ply":
        return read_ply(path, max_points)
    if suffix == ".npy":
        return read_npy(path, max_points)
    if suffix in SUPPORTED_SUFFIXES:
        return read_text_cloud(path, suffix, max_points)
    raise ValueError(
        f"unsupported point cloud file extension {suffix or '(none)'!r} of {path}; "
        f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )
