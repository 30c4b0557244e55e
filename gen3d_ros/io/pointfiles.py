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
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import math
import os
import re
import struct
import tokenize
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gen3d_ros.io.pointcloud2 import PADDING_FIELD, CloudArrays, pack_rgb

_TEXT_SUFFIXES = (".xyz", ".txt", ".dat")
_COMPRESSORS: dict[str, Callable[..., Any]] = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
SUPPORTED_SUFFIXES = (
    ".bin", ".pcd", ".ply", ".npy", *_TEXT_SUFFIXES,
    *(f"{text}{comp}" for text in _TEXT_SUFFIXES for comp in _COMPRESSORS),
)

#: Default cap on the points one file may hold: a 128-beam lidar sweep has ~0.3 M points, a large merged map
#: some millions; 20 M points (x y z float32: 240 MB) is far above either and far below what a corrupt header
#: can claim. Pass ``max_points`` to read bigger files.
DEFAULT_MAX_POINTS = 20_000_000
#: Headers (PCD, PLY) are small; a file whose header does not end within this many bytes is not one of them.
_HEADER_LIMIT = 1 << 20
#: Bytes of text allowed per point (a ``x y z`` row with colours and comments is well under 100 bytes).
_TEXT_BYTES_PER_POINT = 256
#: numpy's own limit on .npy header length (``max_header_size``).
_NPY_MAX_HEADER = 10000
#: Largest PCD point record accepted (PCL's biggest point types, e.g. SHOT1344, are ~5.4 kB).
_MAX_RECORD_BYTES = 1 << 20


class PointFileError(ValueError):
    """A point cloud file is malformed, truncated or over ``max_points``; the message names the file, the
    problem and the values involved."""


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSORS:
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1] if suffixes else ""


def _finite_cloud(points: np.ndarray, fields: dict[str, np.ndarray],
                  organized: tuple[int, int] | None = None) -> CloudArrays:
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 range -> inf -> dropped, counted
        points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    finite = np.isfinite(points).all(axis=1)
    dropped = int(finite.size - np.count_nonzero(finite))
    if dropped:
        points = points[finite]
        fields = {name: values[finite] for name, values in fields.items()}
    return CloudArrays(points=points, fields=fields, dropped=dropped, organized_shape=organized)


def _check_max_points(max_points: int) -> int:
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 0:
        raise ValueError(f"max_points must be a non-negative integer, got {max_points!r}")
    return int(max_points)


def _check_count(what: str, path: Path, count: int, max_points: int) -> None:
    if count > max_points:
        raise PointFileError(
            f"{what} {path} holds {count} points, more than max_points={max_points}; if the file really is "
            f"that big, pass a larger max_points (it is a guard against corrupt headers)"
        )


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
    max_points = _check_max_points(max_points)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    suffix = _suffix(path)
    if suffix == ".bin":
        return _read_kitti_bin(path, max_points)
    if suffix == ".pcd":
        return _read_pcd(path, max_points)
    if suffix == ".ply":
        return _read_ply(path, max_points)
    if suffix == ".npy":
        return _read_npy(path, max_points)
    if suffix in SUPPORTED_SUFFIXES:
        return _read_text(path, suffix, max_points)
    raise ValueError(
        f"unsupported point cloud file extension {suffix or '(none)'!r} of {path}; "
        f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


# ---------------------------------------------------------------------------------------------- KITTI


def _read_kitti_bin(path: Path, max_points: int) -> CloudArrays:
    size = path.stat().st_size
    if size % 16:
        raise PointFileError(
            f"KITTI .bin {path} has {size} bytes, not a multiple of 16 (float32 x y z intensity per point): "
            f"truncated or not a KITTI scan"
        )
    n = size // 16
    _check_count("KITTI .bin", path, n, max_points)
    raw = np.fromfile(path, dtype="<f4", count=4 * n)
    if raw.size != 4 * n:  # the file shrank between stat and read
        raise PointFileError(f"KITTI .bin {path} changed while it was read ({raw.size * 4} of {size} bytes)")
    rows = raw.reshape(-1, 4).astype(np.float32, copy=False)
    return _finite_cloud(rows[:, :3], {"intensity": np.ascontiguousarray(rows[:, 3])})


def write_kitti_bin(path: str | Path, points: np.ndarray, intensity: np.ndarray | None = None) -> None:
    """Write KITTI velodyne ``.bin`` atomically: float32 little-endian ``x y z intensity`` rows.

    points: (N, 3) metres; intensity: (N,) (default zeros), stored as float32. A ``.bin`` has no room for a
    gen3d_ros marker, so ``--force`` never replaces one (see :mod:`gen3d_ros.outputs`).
    """
    from gen3d_ros.outputs import write_bytes

    points = _check_points(points)
    rows = np.zeros((len(points), 4), dtype="<f4")
    rows[:, :3] = points
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != (len(points),):
            raise ValueError(f"intensity must be ({len(points)},), got shape {intensity.shape}")
        rows[:, 3] = intensity
    write_bytes(Path(path), rows.tobytes())


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "fiu":
        raise ValueError(f"points must be a numeric (N, 3) array, got shape {points.shape} dtype {points.dtype}")
    return points


# ---------------------------------------------------------------------------------------------- PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
#: LZF encodes at most 264 output bytes in a 3-byte back reference: nothing decompresses to more than 88x.
_LZF_MAX_RATIO = 88


@dataclass
class _PcdHeader:
    fields: list[str]
    dtypes: list[np.dtype]
    counts: list[int]
    width: int
    height: int
    points: int
    data: str


def _pcd_int(path: Path, key: str, text: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise PointFileError(f"PCD {path} header has {key} {text!r}; expected an integer >= {minimum}: corrupt header")
    return value


def _parse_pcd_header(raw: bytes, path: Path) -> tuple[_PcdHeader, int]:
    """Parse the header in ``raw`` (the file's first bytes); return it and the offset of the body."""
    entries: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            where = f" in its first {len(raw)} bytes" if len(raw) >= _HEADER_LIMIT else ""
            raise PointFileError(f"PCD {path} has no DATA line{where}; is it a PCD file?")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        entries[key.upper()] = values
        if key.upper() == "DATA":
            break
    names = entries.get("FIELDS") or entries.get("COLUMNS")
    if not names:
        raise PointFileError(f"PCD {path} header has no FIELDS line")
    n = len(names)
    sizes = entries.get("SIZE", [])
    types = entries.get("TYPE", [])
    counts_text = entries.get("COUNT", ["1"] * n)
    if not (len(sizes) == len(types) == len(counts_text) == n):
        raise PointFileError(
            f"PCD {path} header lists {n} FIELDS but {len(sizes)} SIZE, {len(types)} TYPE, {len(counts_text)} COUNT"
        )
    dtypes = []
    for name, size, kind in zip(names, sizes, types):
        code = _PCD_TYPES.get((kind.upper(), int(size) if size.isdigit() else -1))
        if code is None:
            raise PointFileError(
                f"PCD {path} field {name!r} has TYPE {kind} SIZE {size}, which PCD does not define "
                f"(F 4/8, I or U 1/2/4/8)"
            )
        dtypes.append(np.dtype(code))
    counts = [_pcd_int(path, f"COUNT of field {name!r}", c, minimum=1) for name, c in zip(names, counts_text)]
    record = sum(dt.itemsize * c for dt, c in zip(dtypes, counts))
    if record > _MAX_RECORD_BYTES:
        raise PointFileError(
            f"PCD {path} header describes {record}-byte points (COUNT {' '.join(counts_text)}); no PCD point type "
            f"is larger than {_MAX_RECORD_BYTES} bytes: corrupt header"
        )
    width = _pcd_int(path, "WIDTH", (entries.get("WIDTH") or ["0"])[0])
    height = _pcd_int(path, "HEIGHT", (entries.get("HEIGHT") or ["1"])[0])
    points = _pcd_int(path, "POINTS", (entries.get("POINTS") or [str(width * height)])[0])
    data = entries["DATA"][0].lower() if entries["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise PointFileError(f"PCD {path} has DATA {data!r}; expected ascii, binary or binary_compressed")
    return _PcdHeader(names, dtypes, counts, width, height, points, data), pos


def lzf_decompress(data: bytes, size: int) -> bytes:
    """Decompress an LZF block (liblzf format, as PCL's binary_compressed uses) to exactly ``size`` bytes.

    Uses the ``lzf`` extension module when importable, else a pure-Python decoder (about 10 MB/s). Raises
    ValueError for corrupt or truncated data and when the data does not decompress to exactly ``size`` bytes
    (the decoder stops as soon as it would write past ``size``).
    """
    if size < 0:
        raise ValueError(f"LZF output size must be >= 0, got {size}")
    if size > _LZF_MAX_RATIO * len(data) + 32:  # checked before the C module allocates `size` bytes
        raise ValueError(f"{len(data)} bytes of LZF data cannot decompress to {size} bytes (at most ~88x)")
    try:  # optional speed-up: python-lzf
        import lzf  # type: ignore[import-not-found]

        out = lzf.decompress(bytes(data), size)
        if out is not None and len(out) == size:
            return out
    except ImportError:
        pass
    src = memoryview(bytes(data))
    out = bytearray()
    ip, end = 0, len(src)
    while ip < end:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            run = ctrl + 1
            if ip + run > end:
                raise ValueError("LZF data is truncated inside a literal run")
            out += src[ip:ip + run]
            ip += run
        else:
            length = ctrl >> 5
            if length == 7:
                if ip >= end:
                    raise ValueError("LZF data is truncated inside a back reference")
                length += src[ip]
                ip += 1
            if ip >= end:
                raise ValueError("LZF data is truncated inside a back reference")
            distance = ((ctrl & 0x1F) << 8) + src[ip] + 1
            ip += 1
            length += 2
            start = len(out) - distance
            if start < 0:
                raise ValueError(f"LZF back reference points {distance} bytes back with only {len(out)} decoded")
            if distance >= length:
                out += out[start:start + length]
            else:  # overlapping copy repeats the last `distance` bytes
                pattern = bytes(out[start:])
                out += (pattern * (length // distance + 1))[:length]
        if len(out) > size:
            raise ValueError(f"LZF data decompresses to more than the expected {size} bytes")
    if len(out) != size:
        raise ValueError(f"LZF data decompressed to {len(out)} bytes, expected {size}")
    return bytes(out)


def _check_integer_columns(path: Path, name: str, values: np.ndarray, dtype: np.dtype) -> None:
    """ascii values of an integer field must be finite and fit its type (a cast would wrap them silently)."""
    if dtype.kind not in "iu" or values.size == 0:
        return
    info = np.iinfo(dtype)
    bad = ~np.isfinite(values) | (values < info.min) | (values > info.max)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        value = float(values.reshape(len(values), -1)[row][bad.reshape(len(values), -1)[row]][0])
        raise PointFileError(
            f"PCD {path} field {name!r} ({dtype.name}) has the value {value} in point {row}, outside "
            f"{info.min}..{info.max}: corrupt data or a wrong TYPE/SIZE in the header"
        )


def _read_pcd(path: Path, max_points: int) -> CloudArrays:
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(min(_HEADER_LIMIT, file_size))
    header, body_start = _parse_pcd_header(head, path)
    body_size = file_size - body_start
    n = header.points
    _check_count("PCD", path, n, max_points)
    names, formats = _pcd_columns_layout(path, header)
    record = np.dtype({"names": names, "formats": formats})
    columns: dict[str, np.ndarray]
    if header.data == "binary":
        columns = _pcd_binary_columns(path, n, names, record, body_start, body_size)
    elif header.data == "binary_compressed":
        columns = _pcd_compressed_columns(path, n, names, formats, record, body_start, body_size)
    else:
        columns = _pcd_ascii_columns(path, header, names, body_start, body_size)

    missing = [axis for axis in "xyz" if axis not in columns]
    if missing:
        raise PointFileError(f"PCD {path} has no {'/'.join(missing)} field; fields are {header.fields}")
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.stack([np.asarray(columns[a], dtype=np.float32).reshape(n) for a in "xyz"], axis=1)
    fields = {name: np.array(values, dtype=values.dtype.newbyteorder("="))
              for name, values in columns.items() if name not in ("x", "y", "z") and not name.startswith("__pad")}
    organized = (header.height, header.width) if header.height > 1 and header.height * header.width == n else None
    return _finite_cloud(points, fields, organized)


def _pcd_columns_layout(path: Path, header: _PcdHeader) -> tuple[list[str], list[Any]]:
    """Column names (padding fields "_" renamed ``__pad<i>``) and little-endian numpy formats of a PCD's fields."""
    formats = [dt.newbyteorder("<") if c == 1 else (dt.newbyteorder("<"), (c,))
               for dt, c in zip(header.dtypes, header.counts)]
    names = [name if name != PADDING_FIELD else f"__pad{i}" for i, name in enumerate(header.fields)]
    if len(set(names)) != len(names):
        raise PointFileError(f"PCD {path} has duplicate field names {header.fields}")
    for axis in "xyz":
        if axis in names and header.counts[names.index(axis)] != 1:
            raise PointFileError(f"PCD {path} field {axis!r} has COUNT {header.counts[names.index(axis)]}; "
                                 f"x, y and z hold one value per point")
    return names, formats


def _pcd_binary_columns(path: Path, n: int, names: list[str], record: np.dtype, body_start: int,
                        body_size: int) -> dict[str, np.ndarray]:
    """Columns of a ``DATA binary`` body: ``n`` records of ``record``, point after point."""
    need = n * record.itemsize
    if body_size < need:
        raise PointFileError(
            f"PCD {path} binary body has {body_size} bytes but {n} points x {record.itemsize} bytes "
            f"= {need} are needed: the file is truncated or its POINTS is wrong"
        )
    records = np.fromfile(path, dtype=record, count=n, offset=body_start)
    if len(records) != n:
        raise PointFileError(f"PCD {path} changed while it was read")
    return {name: records[name] for name in names}


def _pcd_compressed_columns(path: Path, n: int, names: list[str], formats: list[Any], record: np.dtype,
                            body_start: int, body_size: int) -> dict[str, np.ndarray]:
    """Columns of a ``DATA binary_compressed`` body: sizes, then LZF data holding each field for all points."""
    if body_size < 8:
        raise PointFileError(f"PCD {path} binary_compressed body is missing its 8-byte size header: truncated")
    compressed_size, size = struct.unpack("<II", _read_at(path, body_start, 8))
    if compressed_size > body_size - 8:
        raise PointFileError(
            f"PCD {path} says {compressed_size} compressed bytes but has {body_size - 8} after the size "
            f"header: truncated"
        )
    if size != n * record.itemsize:
        raise PointFileError(
            f"PCD {path} decompresses to {size} bytes but {n} points x {record.itemsize} bytes need "
            f"{n * record.itemsize}: corrupt header"
        )
    payload = _read_at(path, body_start + 8, compressed_size)
    try:
        plain = lzf_decompress(payload, size) if size else b""
    except ValueError as exc:
        raise PointFileError(f"PCD {path} binary_compressed body is corrupt: {exc}") from exc
    columns, offset = {}, 0  # binary_compressed stores each field for all points, field after field
    for name, fmt in zip(names, formats):
        dtype = np.dtype(fmt)
        columns[name] = np.frombuffer(plain, dtype=dtype, count=n, offset=offset)
        offset += n * dtype.itemsize
    return columns


def _pcd_ascii_columns(path: Path, header: _PcdHeader, names: list[str], body_start: int,
                       body_size: int) -> dict[str, np.ndarray]:
    """Columns of a ``DATA ascii`` body, each cast to its field's type (integers checked to fit first)."""
    n = header.points
    total = sum(header.counts)
    need = max(0, n * 2 * total - 1)  # every value is at least one character and one separator
    if body_size < need:
        raise PointFileError(
            f"PCD {path} ascii body has {body_size} bytes but {n} points of {total} values need at least "
            f"{need}: the file is truncated or its POINTS is wrong"
        )
    table = _pcd_ascii_table(path, n, body_start)
    if table.size == 0:
        table = np.zeros((0, total))
    if table.shape != (n, total):
        raise PointFileError(
            f"PCD {path} ascii body is {table.shape[0]}{'+' if table.shape[0] > n else ''} rows x "
            f"{table.shape[1]} values, but the header says {n} points x {total} values: truncated or corrupt"
        )
    columns, col = {}, 0
    for name, dtype, count in zip(names, header.dtypes, header.counts):
        values = table[:, col:col + count]
        _check_integer_columns(path, name, values, dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 -> float32 overflow: inf, dropped
            columns[name] = (values[:, 0] if count == 1 else values).astype(dtype)
        col += count
    return columns


def _pcd_ascii_table(path: Path, n: int, body_start: int) -> np.ndarray:
    """float64 table of at most ``n + 1`` data rows of an ascii body (comments and blank lines skipped)."""
    with open(path, "rb") as stream:
        stream.seek(body_start)
        text = io.TextIOWrapper(stream, encoding="ascii", errors="replace")
        # At most n + 1 data lines (one more shows extra rows): work and memory follow the header's claim, not
        # the file. Not loadtxt's max_rows, which allocates max_rows rows before reading one.
        rows = itertools.islice((line for line in text if line.strip() and not line.lstrip().startswith("#")),
                                n + 1)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*no data.*")  # empty body: caller checks
                return np.loadtxt(rows, dtype=np.float64, ndmin=2, comments="#")
        except ValueError as exc:
            raise PointFileError(f"PCD {path} ascii body is not rows of numbers: {exc}") from exc


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(offset)
        return stream.read(size)


def _pcd_type(dtype: np.dtype, name: str) -> tuple[str, int]:
    if dtype == np.bool_:
        return "U", 1
    kind = {"f": "F", "i": "I", "u": "U"}.get(dtype.kind)
    if kind is None or (kind, dtype.itemsize) not in _PCD_TYPES:
        raise ValueError(f"field {name!r} has dtype {dtype}, which PCD cannot store; cast it to a numeric type")
    return kind, dtype.itemsize


def write_pcd(
    path: str | Path,
    points: np.ndarray,
    *,
    fields: Mapping[str, np.ndarray] | None = None,
    binary: bool = True,
) -> None:
    """Write a PCL ``.pcd`` (v0.7) atomically: x y z as float32, then ``fields`` (name -> (N,) or (N, count)) in
    their dtypes. The header's first comment names gen3d_ros (the marker ``--force`` looks for).

    points: (N, 3) metres. ``binary=True`` writes little-endian ``DATA binary``, else ``DATA ascii``
    (floats with enough digits to round-trip exactly). Non-finite values are written as they are.
    """
    from gen3d_ros.outputs import GENERATOR, write_bytes

    points = _check_points(points)
    n = len(points)
    names, dtypes, counts, arrays = ["x", "y", "z"], [np.dtype("f4")] * 3, [1, 1, 1], list(points.T)
    for name, values in (fields or {}).items():
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name) or name in names:
            raise ValueError(f"PCD field names must be unique non-empty words other than x/y/z, got {name!r}")
        values = np.asarray(values)
        if values.ndim not in (1, 2) or values.shape[0] != n:
            raise ValueError(f"field {name!r} must be ({n},) or ({n}, count), got shape {values.shape}")
        _pcd_type(values.dtype, name)
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        names.append(name)
        dtypes.append(values.dtype.newbyteorder("="))
        counts.append(1 if values.ndim == 1 else values.shape[1])
        arrays.append(values)
    kinds = [_pcd_type(dt, name) for dt, name in zip(dtypes, names)]
    header = "\n".join([
        f"# .PCD v0.7 - Point Cloud Data file format (generated by {GENERATOR})",
        "VERSION 0.7",
        "FIELDS " + " ".join(names),
        "SIZE " + " ".join(str(size) for _, size in kinds),
        "TYPE " + " ".join(kind for kind, _ in kinds),
        "COUNT " + " ".join(str(c) for c in counts),
        f"WIDTH {n}",
        "HEIGHT 1",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {n}",
        f"DATA {'binary' if binary else 'ascii'}",
    ]) + "\n"
    if binary:
        record = np.dtype({"names": names, "formats": [dt.newbyteorder("<") if c == 1 else (dt.newbyteorder("<"), (c,))
                                                         for dt, c in zip(dtypes, counts)]})
        records = np.zeros(n, dtype=record)
        for name, values in zip(names, arrays):
            records[name] = values
        write_bytes(Path(path), header.encode("ascii") + records.tobytes())
        return
    formats = []
    columns = []
    for dtype, count, values in zip(dtypes, counts, arrays):
        fmt = {"f": "%.9g" if dtype.itemsize == 4 else "%.17g"}.get(dtype.kind, "%d")
        formats += [fmt] * count
        values = values.reshape(n, count)
        columns += [values[:, i].astype(dtype).tolist() for i in range(count)]
    line = " ".join(formats)
    body = "\n".join(line % row for row in zip(*columns))
    write_bytes(Path(path), (header + body + ("\n" if n else "")).encode("ascii"))


# ---------------------------------------------------------------------------------------------- PLY

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
        head = stream.read(min(_HEADER_LIMIT, path.stat().st_size))
    header_stream = io.BytesIO(head)
    try:
        # plyfile has no public header-only reader; PlyData.read itself starts with this static method (plyfile
        # is pinned in requirements). Parsing the header alone lets the counts be checked before any allocation.
        header = PlyData._parse_header(header_stream)
    except (PlyParseError, ValueError) as exc:  # ValueError: UnicodeDecodeError of non-ASCII header bytes
        if len(head) >= _HEADER_LIMIT:
            raise PointFileError(f"PLY {path} has no end_header line in its first {_HEADER_LIMIT} bytes; "
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
    _check_count("PLY", path, vertex.count, max_points)
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


def _read_ply(path: Path, max_points: int) -> CloudArrays:
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
    return _finite_cloud(points, fields)


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

    points = _check_points(points)
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


# ---------------------------------------------------------------------------------------------- npy and text


def _extra_columns(table: np.ndarray) -> dict[str, np.ndarray]:
    extra = table.shape[1] - 3
    if extra == 1:
        return {"intensity": np.ascontiguousarray(table[:, 3])}
    return {f"col{i}": np.ascontiguousarray(table[:, i]) for i in range(3, table.shape[1])}


def _npy_header(path: Path, stream: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own header reader: (shape, fortran_order, dtype); ``stream`` is left at the start of the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            return fmt.read_array_header_1_0(stream)
        if version in ((2, 0), (3, 0)):
            # numpy reads the header's 4-byte length worth of bytes before it checks it against max_header_size
            # (10000): a damaged length would make it allocate up to 4 GB. Check it first.
            start = stream.tell()
            length = struct.unpack("<I", stream.read(4))[0]
            if length > _NPY_MAX_HEADER:
                raise ValueError(f"format {version[0]}.0 header says it is {length} bytes long; numpy allows "
                                 f"{_NPY_MAX_HEADER}")
            stream.seek(start)
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
            if version == (3, 0) and dtype.names:
                # 3.0 differs from 2.0 only in its UTF-8 header (numpy writes it for field names latin-1 cannot
                # spell); read_array_header_2_0 decodes latin-1, so undo that on the field names.
                dtype = np.dtype({"names": [n.encode("latin-1").decode("utf-8") for n in dtype.names],
                                  "formats": [dtype.fields[n][0] for n in dtype.names],
                                  "offsets": [dtype.fields[n][1] for n in dtype.names],
                                  "itemsize": dtype.itemsize})
            return shape, fortran, dtype
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, TypeError, SyntaxError, OverflowError, RecursionError, struct.error,
            tokenize.TokenError) as exc:
        # ValueError includes UnicodeError (a 3.0 header that is not UTF-8); TokenError escapes numpy's fallback
        # parser of old-style headers (numpy 2.4) when the header is damaged
        raise PointFileError(f".npy {path} has an unreadable header: {exc}") from exc


def _read_npy(path: Path, max_points: int) -> CloudArrays:
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        shape, fortran, dtype = _npy_header(path, stream)
        offset = stream.tell()
        if dtype.hasobject or dtype.subdtype is not None:
            raise PointFileError(f".npy {path} holds dtype {dtype}; point clouds are numeric arrays (no objects, "
                                 f"no sub-array dtypes)")
        if any(not isinstance(dim, int) or dim < 0 for dim in shape):
            raise PointFileError(f".npy {path} header has shape {shape}: corrupt header")
        count = math.prod(shape)
        structured = dtype.names is not None
        if not structured and (len(shape) != 2 or shape[1] < 3 or dtype.kind not in "fiu"):
            raise PointFileError(
                f".npy {path} must hold a numeric (N, 3+) array, got shape {shape} dtype {dtype}"
            )
        if structured:
            bad = [a for a in "xyz" if a not in dtype.names or dtype[a].kind not in "fiu" or dtype[a].shape]
            if bad:
                raise PointFileError(
                    f".npy {path} is a structured array without numeric scalar {bad} fields; fields are "
                    f"{dtype.names}"
                )
        _check_count(".npy", path, count if structured else shape[0], max_points)
        need, body = count * dtype.itemsize, file_size - offset
        if body < need:
            raise PointFileError(
                f".npy {path} header says shape {shape} of {dtype} = {need} bytes but the file has {body} bytes "
                f"after its header: truncated or corrupt"
            )
        flat = np.fromfile(stream, dtype=dtype, count=count)
    if flat.size != count:
        raise PointFileError(f".npy {path} changed while it was read")
    array = flat.reshape(shape, order="F" if fortran else "C")
    if structured:
        flat = array.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            points = np.stack([flat[a].astype(np.float32) for a in "xyz"], axis=1)
        fields = {name: np.array(flat[name], dtype=flat[name].dtype.newbyteorder("="))
                  for name in dtype.names if name not in ("x", "y", "z")}
        return _finite_cloud(points, fields)
    return _finite_cloud(array[:, :3], _extra_columns(array.astype(dtype.newbyteorder("="), copy=False)))


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
    opener = _COMPRESSORS.get(suffix[suffix.rfind("."):]) if suffix.count(".") > 1 else None
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
    _check_count("text file", path, len(table), max_points)
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
            _check_count("scan graph", path, total, max_points)
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
    max_points = _check_max_points(max_points)
    if not path.is_file():
        raise FileNotFoundError(f"scan graph file not found: {path}")
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES or suffix.split(".")[1] not in ("xyz", "txt", "dat"):
        raise ValueError(f"a scan graph is a text file ({', '.join(SUPPORTED_SUFFIXES[4:])}), got {path}")
    text = _open_text(path, suffix, max_points)
    if not _NODE.search(text):
        raise PointFileError(f"{path} has no 'NODE x y z roll pitch yaw' lines; read it with read_points()")
    return _parse_scan_graph(text, path, max_points)


def _read_text(path: Path, suffix: str, max_points: int) -> CloudArrays:
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
        cloud = _finite_cloud(points, {})
        cloud.dropped += raw_lines - total
        return cloud
    table = _parse_table(text.replace(",", " "), path, max_points)
    return _finite_cloud(table[:, :3], _extra_columns(table) if table.shape[1] > 3 else {})
