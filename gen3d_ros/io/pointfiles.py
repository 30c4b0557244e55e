"""Point cloud files <-> :class:`~gen3d_ros.io.pointcloud2.CloudArrays` (no ROS involved).

Read: KITTI ``.bin``, PCL ``.pcd`` (ascii, binary, binary_compressed), ``.ply`` (open3d), ``.npy``, whitespace text
``.xyz``/``.txt``/``.dat`` (optionally ``.bz2``/``.gz``/``.xz`` compressed), including octomap's scan-graph log
format (``NODE x y z roll pitch yaw`` lines, each followed by that scan's ``x y z`` lines).
Write: ``.ply``, ``.pcd``, KITTI ``.bin``.

Coordinates are metres in the file's own frame. Non-finite points are dropped and counted in ``dropped``.
Arrays returned here are fresh and writable. Colours are returned as the PCL/rviz packed ``rgb`` field
(uint32 ``0x00RRGGBB``; see :func:`~gen3d_ros.io.pointcloud2.unpack_rgb`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import struct
import warnings
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


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSORS:
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1] if suffixes else ""


def _finite_cloud(points: np.ndarray, fields: dict[str, np.ndarray],
                  organized: tuple[int, int] | None = None) -> CloudArrays:
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    finite = np.isfinite(points).all(axis=1)
    dropped = int(finite.size - np.count_nonzero(finite))
    if dropped:
        points = points[finite]
        fields = {name: values[finite] for name, values in fields.items()}
    return CloudArrays(points=points, fields=fields, dropped=dropped, organized_shape=organized)


def read_points(path: str | Path) -> CloudArrays:
    """Read a point cloud file into :class:`CloudArrays` (points (N, 3) float32 metres, file frame).

    Formats by extension:
        ``.bin``: KITTI velodyne, float32 x y z intensity -> ``fields["intensity"]``.
        ``.pcd``: ascii, binary or binary_compressed; every field kept in its dtype (``rgb`` stays as PCL
            wrote it, usually float32 bits), count > 1 fields as (N, count), organised clouds keep
            ``organized_shape``.
        ``.ply``: via open3d; colours -> ``fields["rgb"]`` packed uint32, normals -> ``fields["normals"]`` (N, 3).
        ``.npy``: (N, 3+) numeric array, or a structured array with x, y, z fields (other names kept).
        ``.xyz``/``.txt``/``.dat`` (+ ``.bz2``/``.gz``/``.xz``): whitespace (or comma) separated rows ``x y z ...``,
            ``#`` comments. Extra columns: a 4th alone is ``intensity``; otherwise ``col3``, ``col4``, ...
            Files with ``NODE x y z roll pitch yaw`` lines are octomap scan graphs: each scan's points are in
            its NODE's sensor frame and are transformed into the common frame, as octomap's graph2tree does
            (use :func:`read_scan_graph` for the per-scan points and poses).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unsupported extension (the message lists the supported ones) or a malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    suffix = _suffix(path)
    if suffix == ".bin":
        return _read_kitti_bin(path)
    if suffix == ".pcd":
        return _read_pcd(path)
    if suffix == ".ply":
        return _read_ply(path)
    if suffix == ".npy":
        return _read_npy(path)
    if suffix in SUPPORTED_SUFFIXES:
        return _read_text(path, suffix)
    raise ValueError(
        f"unsupported point cloud file extension {suffix or '(none)'!r} of {path}; "
        f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


# ---------------------------------------------------------------------------------------------- KITTI


def _read_kitti_bin(path: Path) -> CloudArrays:
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % 4:
        raise ValueError(
            f"KITTI .bin {path} has {raw.size * 4} bytes, not a multiple of 16 (float32 x y z intensity per point)"
        )
    rows = raw.reshape(-1, 4).astype(np.float32, copy=False)
    return _finite_cloud(rows[:, :3], {"intensity": np.ascontiguousarray(rows[:, 3])})


def write_kitti_bin(path: str | Path, points: np.ndarray, intensity: np.ndarray | None = None) -> None:
    """Write KITTI velodyne ``.bin``: float32 little-endian ``x y z intensity`` rows.

    points: (N, 3) metres; intensity: (N,) (default zeros), stored as float32.
    """
    points = _check_points(points)
    rows = np.zeros((len(points), 4), dtype="<f4")
    rows[:, :3] = points
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != (len(points),):
            raise ValueError(f"intensity must be ({len(points)},), got shape {intensity.shape}")
        rows[:, 3] = intensity
    rows.tofile(Path(path))


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "fiu":
        raise ValueError(f"points must be a numeric (N, 3) array, got shape {points.shape} dtype {points.dtype}")
    return points


# ---------------------------------------------------------------------------------------------- PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


@dataclass
class _PcdHeader:
    fields: list[str]
    dtypes: list[np.dtype]
    counts: list[int]
    width: int
    height: int
    points: int
    data: str


def _parse_pcd_header(raw: bytes, path: Path) -> tuple[_PcdHeader, int]:
    entries: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"PCD {path} has no DATA line; is it a PCD file?")
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
        raise ValueError(f"PCD {path} header has no FIELDS line")
    n = len(names)
    sizes = entries.get("SIZE", [])
    types = entries.get("TYPE", [])
    counts = entries.get("COUNT", ["1"] * n)
    if not (len(sizes) == len(types) == len(counts) == n):
        raise ValueError(
            f"PCD {path} header lists {n} FIELDS but {len(sizes)} SIZE, {len(types)} TYPE, {len(counts)} COUNT"
        )
    dtypes = []
    for name, size, kind in zip(names, sizes, types):
        code = _PCD_TYPES.get((kind.upper(), int(size)))
        if code is None:
            raise ValueError(f"PCD {path} field {name!r} has TYPE {kind} SIZE {size}, which PCD does not define")
        dtypes.append(np.dtype(code))
    width = int(entries.get("WIDTH", ["0"])[0])
    height = int(entries.get("HEIGHT", ["1"])[0])
    points = int(entries.get("POINTS", [str(width * height)])[0])
    data = entries["DATA"][0].lower() if entries["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise ValueError(f"PCD {path} has DATA {data!r}; expected ascii, binary or binary_compressed")
    return _PcdHeader(names, dtypes, [int(c) for c in counts], width, height, points, data), pos


def lzf_decompress(data: bytes, size: int) -> bytes:
    """Decompress an LZF block (liblzf format, as PCL's binary_compressed uses) to exactly ``size`` bytes.

    Uses the ``lzf`` extension module when importable, else a pure-Python decoder (about 10 MB/s).
    """
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
            continue
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
    if len(out) != size:
        raise ValueError(f"LZF data decompressed to {len(out)} bytes, expected {size}")
    return bytes(out)


def _read_pcd(path: Path) -> CloudArrays:
    raw = path.read_bytes()
    header, body_start = _parse_pcd_header(raw, path)
    n = header.points
    formats = [dt.newbyteorder("<") if c == 1 else (dt.newbyteorder("<"), (c,))
               for dt, c in zip(header.dtypes, header.counts)]
    names = [name if name != PADDING_FIELD else f"__pad{i}" for i, name in enumerate(header.fields)]
    if len(set(names)) != len(names):
        raise ValueError(f"PCD {path} has duplicate field names {header.fields}")
    record = np.dtype({"names": names, "formats": formats})
    columns: dict[str, np.ndarray]

    if header.data == "binary":
        body = memoryview(raw)[body_start:]
        if len(body) < n * record.itemsize:
            raise ValueError(
                f"PCD {path} binary body has {len(body)} bytes but {n} points x {record.itemsize} bytes "
                f"= {n * record.itemsize} are needed; the file is truncated"
            )
        records = np.frombuffer(body, dtype=record, count=n)
        columns = {name: records[name] for name in names}
    elif header.data == "binary_compressed":
        if len(raw) < body_start + 8:
            raise ValueError(f"PCD {path} binary_compressed body is missing its 8-byte size header")
        compressed_size, size = struct.unpack_from("<II", raw, body_start)
        payload = raw[body_start + 8: body_start + 8 + compressed_size]
        if len(payload) != compressed_size:
            raise ValueError(f"PCD {path} says {compressed_size} compressed bytes but has {len(payload)}")
        if size != n * record.itemsize:
            raise ValueError(f"PCD {path} decompresses to {size} bytes but {n} points need {n * record.itemsize}")
        plain = lzf_decompress(payload, size) if size else b""
        columns, offset = {}, 0  # binary_compressed stores each field for all points, field after field
        for name, fmt in zip(names, formats):
            dtype = np.dtype(fmt)
            columns[name] = np.frombuffer(plain, dtype=dtype, count=n, offset=offset)
            offset += n * dtype.itemsize
    else:
        text = raw[body_start:].decode("ascii", errors="replace")
        total = sum(header.counts)
        table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments="#") if text.strip() \
            else np.zeros((0, total))
        if table.shape != (n, total):
            raise ValueError(f"PCD {path} ascii body is {table.shape[0]}x{table.shape[1]}, expected {n}x{total}")
        columns, col = {}, 0
        for name, dtype, count in zip(names, header.dtypes, header.counts):
            values = table[:, col:col + count]
            columns[name] = (values[:, 0] if count == 1 else values).astype(dtype)
            col += count

    missing = [axis for axis in "xyz" if axis not in columns]
    if missing:
        raise ValueError(f"PCD {path} has no {'/'.join(missing)} field; fields are {header.fields}")
    points = np.stack([np.asarray(columns[a], dtype=np.float32).reshape(n) for a in "xyz"], axis=1)
    fields = {name: np.array(values, dtype=values.dtype.newbyteorder("="))
              for name, values in columns.items() if name not in ("x", "y", "z") and not name.startswith("__pad")}
    organized = (header.height, header.width) if header.height > 1 and header.height * header.width == n else None
    return _finite_cloud(points, fields, organized)


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
    """Write a PCL ``.pcd`` (v0.7): x y z as float32, then ``fields`` (name -> (N,) or (N, count)) in their dtypes.

    points: (N, 3) metres. ``binary=True`` writes little-endian ``DATA binary``, else ``DATA ascii``
    (floats with enough digits to round-trip exactly). Non-finite values are written as they are.
    """
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
        "# .PCD v0.7 - Point Cloud Data file format (gen3d_ros)",
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
        Path(path).write_bytes(header.encode("ascii") + records.tobytes())
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
    Path(path).write_text(header + body + ("\n" if n else ""), encoding="ascii")


# ---------------------------------------------------------------------------------------------- PLY


def _read_ply(path: Path) -> CloudArrays:
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path), format="ply")
    points = np.asarray(cloud.points)
    fields: dict[str, np.ndarray] = {}
    if cloud.has_colors():
        fields["rgb"] = pack_rgb(np.asarray(cloud.colors))
    if cloud.has_normals():
        fields["normals"] = np.asarray(cloud.normals, dtype=np.float32)
    return _finite_cloud(points, fields)


def write_ply(path: str | Path, points: np.ndarray, *, colors: np.ndarray | None = None) -> None:
    """Write a binary ``.ply`` point cloud with open3d.

    points: (N, 3) metres (stored as float64); colors: optional (N, 3) uint8 or float 0..1 (stored as uint8).
    """
    import open3d as o3d

    points = _check_points(points)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (len(points), 3):
            raise ValueError(f"colors must be ({len(points)}, 3), got shape {colors.shape}")
        if colors.dtype == np.uint8:
            colors = colors.astype(np.float64) / 255.0
        elif colors.dtype.kind != "f" or (colors.size and (colors.min() < 0 or colors.max() > 1)):
            raise ValueError("colors must be uint8 or float in 0..1")
        cloud.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
    if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
        raise OSError(f"open3d could not write {path}")


# ---------------------------------------------------------------------------------------------- npy and text


def _extra_columns(table: np.ndarray) -> dict[str, np.ndarray]:
    extra = table.shape[1] - 3
    if extra == 1:
        return {"intensity": np.ascontiguousarray(table[:, 3])}
    return {f"col{i}": np.ascontiguousarray(table[:, i]) for i in range(3, table.shape[1])}


def _read_npy(path: Path) -> CloudArrays:
    array = np.load(path, allow_pickle=False)
    if array.dtype.names:
        missing = [axis for axis in "xyz" if axis not in array.dtype.names]
        if missing:
            raise ValueError(f".npy {path} is a structured array without {missing}; fields are {array.dtype.names}")
        flat = array.reshape(-1)
        points = np.stack([flat[a].astype(np.float32) for a in "xyz"], axis=1)
        fields = {name: np.ascontiguousarray(flat[name]) for name in array.dtype.names if name not in ("x", "y", "z")}
        return _finite_cloud(points, fields)
    if array.ndim != 2 or array.shape[1] < 3 or array.dtype.kind not in "fiu":
        raise ValueError(f".npy {path} must hold a numeric (N, 3+) array, got shape {array.shape} dtype {array.dtype}")
    return _finite_cloud(array[:, :3], _extra_columns(array))


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


def _open_text(path: Path, suffix: str) -> str:
    opener = _COMPRESSORS.get(suffix[suffix.rfind("."):]) if suffix.count(".") > 1 else None
    if opener is None:
        return path.read_text(encoding="utf-8", errors="replace")
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        return stream.read()


_NODE = re.compile(r"^[ \t]*NODE\b", re.MULTILINE)


def _parse_table(lines: list[str] | str, path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ee]mpty input file.*")
            warnings.filterwarnings("ignore", message=".*no data.*")
            table = np.loadtxt(io.StringIO(lines) if isinstance(lines, str) else lines,
                               dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        raise ValueError(f"cannot parse {path} as rows of numbers 'x y z ...': {exc}") from exc
    if table.size == 0:
        return np.zeros((0, 3))
    if table.shape[1] < 3:
        raise ValueError(f"{path} has {table.shape[1]} column(s); point rows need at least x y z")
    return table


def _parse_scan_graph(text: str, path: Path) -> list[ScanNode]:
    nodes: list[tuple[np.ndarray, list[str]]] = []
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
                raise ValueError(f"{path}:{number}: expected 'NODE x y z roll pitch yaw', got {line!r}")
            nodes.append((pose, []))
        elif not nodes:
            raise ValueError(f"{path}:{number}: point line before the first NODE line in a scan-graph log")
        else:
            nodes[-1][1].append(line.replace(",", " "))
    scans = []
    for pose, lines in nodes:
        table = _parse_table(lines, path) if lines else np.zeros((0, 3))
        points = table[:, :3].astype(np.float32)
        scans.append(ScanNode(pose, points[np.isfinite(points).all(axis=1)]))
    return scans


def read_scan_graph(path: str | Path) -> list[ScanNode]:
    """Read an octomap scan-graph log (``NODE x y z roll pitch yaw`` + point lines; text, optionally compressed).

    Returns one :class:`ScanNode` per NODE, points in that scan's sensor frame.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scan graph file not found: {path}")
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES or suffix.split(".")[1] not in ("xyz", "txt", "dat"):
        raise ValueError(f"a scan graph is a text file ({', '.join(SUPPORTED_SUFFIXES[4:])}), got {path}")
    text = _open_text(path, suffix)
    if not _NODE.search(text):
        raise ValueError(f"{path} has no 'NODE x y z roll pitch yaw' lines; read it with read_points()")
    return _parse_scan_graph(text, path)


def _read_text(path: Path, suffix: str) -> CloudArrays:
    text = _open_text(path, suffix)
    if _NODE.search(text):
        scans = _parse_scan_graph(text, path)
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
    table = _parse_table(text.replace(",", " "), path)
    return _finite_cloud(table[:, :3], _extra_columns(table) if table.shape[1] > 3 else {})
