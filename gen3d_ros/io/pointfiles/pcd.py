"""PCL ``.pcd`` (v0.7) point clouds: ascii, binary and binary_compressed (LZF) read, ascii and binary written."""

from __future__ import annotations

import io
import itertools
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gen3d_ros.io.pointcloud2 import PADDING_FIELD, CloudArrays
from gen3d_ros.io.pointfiles.checks import HEADER_LIMIT, PointFileError, check_count, check_points, finite_cloud

#: Largest PCD point record accepted (PCL's biggest point types, e.g. SHOT1344, are ~5.4 kB).
_MAX_RECORD_BYTES = 1 << 20
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
            where = f" in its first {len(raw)} bytes" if len(raw) >= HEADER_LIMIT else ""
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


def read_pcd(path: Path, max_points: int) -> CloudArrays:
    """The PCD cloud at ``path`` (an existing file), every field in its dtype, at most ``max_points`` points."""
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(min(HEADER_LIMIT, file_size))
    header, body_start = _parse_pcd_header(head, path)
    body_size = file_size - body_start
    n = header.points
    check_count("PCD", path, n, max_points)
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
    return finite_cloud(points, fields, organized)


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

    points = check_points(points)
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
