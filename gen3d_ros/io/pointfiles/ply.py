"""``.ply`` point clouds through plyfile: ascii or binary read (the ``vertex`` element is the cloud), binary
little-endian written (with optional colours and triangle faces)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from gen3d_ros.io.pointcloud2 import CloudArrays, pack_rgb
from gen3d_ros.io.pointfiles.checks import HEADER_LIMIT, PointFileError, check_count, check_points, finite_cloud

_PLY_PLURAL = {"vertex": "vertices", "face": "faces", "edge": "edges"}
_PLY_OWN_PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha")


class _CappedReader(io.BufferedReader):
    """A binary file whose ``read(n)`` never asks for more than the bytes left in it.

    plyfile reads a binary list property with ``stream.read(length * itemsize)``, ``length`` taken from the
    file, and CPython allocates ``n`` bytes before reading: one corrupt list length (say 4e9) would cost
    gigabytes. Capped, the read comes back short and plyfile reports an early end of file."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = max(0, min(size, self._size - self.tell()))
        return super().read(size)


def _ply_header(path: Path) -> tuple[Any, int]:
    """plyfile's parse of the header (elements, counts, properties, format) and the offset of the body."""
    from plyfile import PlyData, PlyParseError

    with open(path, "rb") as stream:
        head = stream.read(min(HEADER_LIMIT, path.stat().st_size))
    header_stream = io.BytesIO(head)
    try:
        # plyfile has no public header-only reader; PlyData.read itself starts with this static method (plyfile
        # is pinned in requirements). Parsing the header alone lets the counts be checked before any allocation.
        header = PlyData._parse_header(header_stream)
    except (PlyParseError, ValueError) as exc:  # ValueError: UnicodeDecodeError of non-ASCII header bytes
        if len(head) >= HEADER_LIMIT:
            raise PointFileError(f"PLY {path} has no end_header line in its first {HEADER_LIMIT} bytes; "
                                 f"is it a PLY file?") from exc
        raise PointFileError(f"PLY {path} has a malformed header: {exc}") from exc
    return header, header_stream.tell()


def _check_ply_header(path: Path, header: Any, body: int, max_points: int) -> None:
    """Counts and properties of the header against the ``body`` bytes that follow it, before plyfile allocates."""
    from plyfile import PlyListProperty

    elements = list(header.elements)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise PointFileError(f"PLY {path} has no 'vertex' element (elements: {names}); it holds no points")
    for e in elements:
        if e.count < 0:
            raise PointFileError(f"PLY {path} header says element {e.name!r} has {e.count} rows: corrupt header")
        if e.count and not e.properties:
            raise PointFileError(f"PLY {path} element {e.name!r} has {e.count} rows but no properties: corrupt header")
    vertex = header["vertex"]
    check_count("PLY", path, vertex.count, max_points)
    props = {p.name: p for p in vertex.properties}
    for axis in "xyz":
        if axis not in props or isinstance(props[axis], PlyListProperty):
            raise PointFileError(f"PLY {path} vertex element has no scalar {axis!r} property; "
                                 f"properties are {list(props)}")
    need, parts = 0, []
    for e in elements:
        lists = any(isinstance(p, PlyListProperty) for p in e.properties)
        if header.text:  # every value (a list: its length) is at least one character and one separator
            per, exact = 2 * len(e.properties), False
        else:
            per = sum(np.dtype(p.len_dtype if isinstance(p, PlyListProperty) else p.val_dtype).itemsize
                      for p in e.properties)
            exact = not lists
        need += e.count * per
        parts.append(f"{e.count} {_PLY_PLURAL.get(e.name, repr(e.name) + ' rows')} x {'' if exact else 'at least '}"
                     f"{per} bytes")
    if header.text:
        need = max(0, need - 1)  # the last row may lack its newline
    if body < need:
        raise PointFileError(
            f"PLY {path} header says {' + '.join(parts)} but the file has {body} bytes after its header: "
            f"truncated or corrupt"
        )


def _ply_read(path: Path, known_list_len: dict[str, dict[str, int]]) -> Any:
    from plyfile import PlyData

    with _CappedReader(path) as stream:
        # mmap: elements without list properties (and triangle faces, through known_list_len) are mapped, not
        # copied row by row; plyfile checks the mapped size against the file itself.
        return PlyData.read(stream, mmap="c", known_list_len=known_list_len)


def _ply_colours(vertex: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 from red/green/blue of any PLY type: uchar as is, floats as 0..1, other ints full scale."""
    rgb = np.stack([np.asarray(vertex[c]) for c in ("red", "green", "blue")], axis=1)
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype.kind == "f":
        scaled = np.nan_to_num(rgb.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0) * 255.0
    else:
        scaled = rgb.astype(np.float64) * (255.0 / np.iinfo(rgb.dtype).max)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_ply(path: Path, max_points: int) -> CloudArrays:
    """The ``vertex`` element of the PLY at ``path`` (an existing file), at most ``max_points`` points."""
    from plyfile import PlyElementParseError, PlyListProperty, PlyParseError

    header, body_start = _ply_header(path)
    _check_ply_header(path, header, path.stat().st_size - body_start, max_points)
    known: dict[str, dict[str, int]] = {}
    for e in header.elements:
        lists = [p.name for p in e.properties if isinstance(p, PlyListProperty)]
        if e.name == "face" and len(lists) == 1 and not header.text:
            known["face"] = {lists[0]: 3}  # triangles are mapped; a polygon mesh falls back to row by row below
    try:
        try:
            data = _ply_read(path, known)
        except PlyElementParseError as exc:
            if not known or exc.message != "unexpected list length":
                raise
            data = _ply_read(path, {})
    except (PlyParseError, ValueError, OverflowError) as exc:
        # OverflowError: an ascii value out of its property's range (uchar 300)
        raise PointFileError(f"PLY {path} is malformed or truncated: {exc}") from exc
    vertex = data["vertex"].data
    if len(vertex) != header["vertex"].count:  # plyfile checks this; a wrong count must never pass silently
        raise PointFileError(f"PLY {path} gave {len(vertex)} vertices but its header says {header['vertex'].count}")
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.stack([np.asarray(vertex[a], dtype=np.float32) for a in "xyz"], axis=1)
    names = vertex.dtype.names
    fields: dict[str, np.ndarray] = {}
    if all(c in names for c in ("red", "green", "blue")):
        fields["rgb"] = pack_rgb(_ply_colours(vertex))
    if all(c in names for c in ("nx", "ny", "nz")):
        fields["normals"] = np.stack([np.asarray(vertex[c], dtype=np.float32) for c in ("nx", "ny", "nz")], axis=1)
    for name in names:
        if name in _PLY_OWN_PROPERTIES or name in fields or vertex.dtype[name].hasobject:  # lists: skipped
            continue
        fields[name] = np.array(vertex[name], dtype=vertex.dtype[name].newbyteorder("="))
    return finite_cloud(points, fields)


def write_ply(path: str | Path, points: np.ndarray, *, colors: np.ndarray | None = None,
              faces: np.ndarray | None = None) -> None:
    """Write a binary little-endian ``.ply`` atomically with plyfile; its header carries the comment
    ``generated by gen3d_ros <version>`` (the marker ``--force`` looks for).

    Args:
        points: (N, 3) metres, stored as float32 (float64 input as double, so nothing is lost).
        colors: optional (N, 3) uint8 or float 0..1, stored as uchar ``red green blue``.
        faces: optional (F, 3) vertex indices of triangles, stored as ``face`` with ``list uchar int
            vertex_indices`` (a mesh; open3d, MeshLab and Blender read it).
    """
    from plyfile import PlyData, PlyElement

    from gen3d_ros.outputs import GENERATOR, atomic_path

    points = check_points(points)
    n = len(points)
    coord = "<f8" if points.dtype == np.float64 else "<f4"
    layout = [(axis, coord) for axis in "xyz"]
    rgb = None
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ValueError(f"colors must be ({n}, 3), got shape {colors.shape}")
        if colors.dtype == np.uint8:
            rgb = colors
        elif colors.dtype.kind == "f" and (colors.size == 0 or (np.isfinite(colors).all() and colors.min() >= 0
                                                               and colors.max() <= 1)):
            rgb = np.rint(colors.astype(np.float64) * 255.0).astype(np.uint8)
        else:
            raise ValueError(f"colors must be uint8 or finite floats in 0..1, got dtype {colors.dtype}")
        layout += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(n, dtype=layout)
    for column, axis in enumerate("xyz"):
        vertex[axis] = points[:, column]
    if rgb is not None:
        for column, name in enumerate(("red", "green", "blue")):
            vertex[name] = rgb[:, column]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
            raise ValueError(f"faces must be an integer (F, 3) array, got shape {faces.shape} dtype {faces.dtype}")
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise ValueError(f"faces index vertices {faces.min()}..{faces.max()} but there are {n} vertices")
        face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"}))
    ply = PlyData(elements, text=False, byte_order="<", comments=[f"generated by {GENERATOR}"])
    with atomic_path(Path(path)) as tmp:
        ply.write(str(tmp))
