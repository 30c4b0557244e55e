"""``sensor_msgs/PointCloud2`` <-> numpy, for any field layout.

Reading builds a numpy structured dtype from ``msg.fields`` and views ``msg.data`` through it, so x/y/z and the
other fields come out without copying where the layout allows (native byte order, no row padding, no
non-finite points). Writing produces a dense, little-endian, ``height=1`` cloud with x/y/z as FLOAT32 followed
by the extra fields, each at its natural alignment.

Arrays returned by :func:`pointcloud2_to_arrays` are **read-only**: they may alias ``msg.data``. Call
``.copy()`` before modifying them. Both message worlds (rclpy, rosbags) are read by duck typing and written
through a :class:`~gen3d_ros.io.messages.MessageFactory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from gen3d_ros.io.messages import (  # noqa: F401  (make_header & co. were defined here first)
    MessageFactory,
    float64_sequence,
    make_header,
    message_bytes,
    uint8_sequence,
    uint_field,
)

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = 1, 2, 3, 4, 5, 6, 7, 8

DTYPE_OF_DATATYPE: dict[int, np.dtype] = {
    INT8: np.dtype(np.int8), UINT8: np.dtype(np.uint8), INT16: np.dtype(np.int16),
    UINT16: np.dtype(np.uint16), INT32: np.dtype(np.int32), UINT32: np.dtype(np.uint32),
    FLOAT32: np.dtype(np.float32), FLOAT64: np.dtype(np.float64),
}
DATATYPE_NAMES: dict[int, str] = {
    INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16",
    INT32: "INT32", UINT32: "UINT32", FLOAT32: "FLOAT32", FLOAT64: "FLOAT64",
}
DATATYPE_OF_DTYPE: dict[np.dtype, int] = {dtype: code for code, dtype in DTYPE_OF_DATATYPE.items()}

#: PCL names padding fields "_"; they carry no data and may repeat.
PADDING_FIELD = "_"
_XYZ = ("x", "y", "z")


@dataclass(eq=False)  # holds numpy arrays: compare fields explicitly
class CloudArrays:
    """A point cloud as numpy arrays.

    points: (N, 3) float32, metres, in the frame of the source's ``header.frame_id``; finite rows only.
    fields: other named fields, each (N,) or (N, count) in its native dtype, same rows as ``points``
        (e.g. ``intensity``, ``ring``, ``time``, ``rgb``).
    dropped: number of points removed because x, y or z was NaN or infinite.
    organized_shape: (height, width) of an organised source cloud (height > 1), else None. Rows of ``points``
        follow the source's row-major order, minus the dropped ones.
    """

    points: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    dropped: int = 0
    organized_shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True)
class _Field:
    name: str
    dtype: np.dtype  # with the message's byte order
    offset: int
    count: int


def _readonly(array_: np.ndarray) -> np.ndarray:
    array_.flags.writeable = False
    return array_


# ---------------------------------------------------------------------------------------------- reading


def _parse_fields(msg_fields: Sequence[Any], point_step: int, bigendian: bool) -> list[_Field]:
    order = ">" if bigendian else "<"
    parsed: list[_Field] = []
    seen: set[str] = set()
    for pf in msg_fields:
        name = str(pf.name)
        where = f"PointCloud2 field {name!r}"
        datatype = uint_field(where, "datatype", pf.datatype, 8)
        offset, count = uint_field(where, "offset", pf.offset), uint_field(where, "count", pf.count)
        if datatype not in DTYPE_OF_DATATYPE:
            raise ValueError(
                f"PointCloud2 field {name!r} has unknown datatype {datatype}; "
                f"PointField datatypes are 1..8 ({', '.join(f'{v}={k}' for k, v in DATATYPE_NAMES.items())})"
            )
        if count < 1:
            raise ValueError(f"PointCloud2 field {name!r} has count={count}; every field needs count >= 1")
        dtype = DTYPE_OF_DATATYPE[datatype].newbyteorder(order)
        end = offset + dtype.itemsize * count
        if offset < 0 or end > point_step:
            raise ValueError(
                f"PointCloud2 has point_step={point_step} but field {name!r} "
                f"({DATATYPE_NAMES[datatype]} x{count} at offset {offset}) ends at byte {end}; "
                f"point_step must cover every field"
            )
        if name == PADDING_FIELD:
            continue
        if not name:
            raise ValueError("PointCloud2 has a field with an empty name; name it or drop it")
        if name in seen:
            raise ValueError(
                f"PointCloud2 has duplicate field name {name!r} (fields {[str(f.name) for f in msg_fields]}); "
                f"names must be unique"
            )
        seen.add(name)
        parsed.append(_Field(name, dtype, offset, count))
    return parsed


def _empty_cloud(layout: Sequence[_Field], keep: Sequence[str], organized: tuple[int, int] | None) -> CloudArrays:
    by_name = {f.name: f for f in layout}
    fields = {}
    for name in keep:
        f = by_name[name]
        shape = (0,) if f.count == 1 else (0, f.count)
        fields[name] = _readonly(np.zeros(shape, dtype=f.dtype.newbyteorder("=")))
    return CloudArrays(_readonly(np.zeros((0, 3), np.float32)), fields, 0, organized)


def pointcloud2_to_arrays(msg: Any, *, keep_fields: Sequence[str] | None = None) -> CloudArrays:
    """Read a ``sensor_msgs/PointCloud2`` (either world) into :class:`CloudArrays`.

    Handles any field layout: x/y/z as FLOAT32 or FLOAT64, other fields of any PointField datatype with
    ``count >= 1`` (returned as (N, count) when count > 1), ``point_step`` padding, ``row_step`` padding,
    ``is_bigendian``, organised clouds (height > 1), and non-finite points (always filtered and counted in
    ``dropped``, whatever ``is_dense`` claims). PCL padding fields named ``"_"`` are ignored.

    Args:
        msg: the cloud; points are in metres in the frame ``msg.header.frame_id``.
        keep_fields: names of the non-xyz fields to return (default: all). Naming a field the cloud lacks is
            an error.

    Returns:
        CloudArrays whose arrays are read-only and may be views of ``msg.data``.

    Byte order: with ``is_bigendian`` every multi-byte field is read big-endian and converted to native order
    (the returned arrays compare equal to those of the little-endian cloud of the same points).

    Raises:
        ValueError: malformed messages (missing x/y/z, duplicate names, unknown datatype, fields past
            ``point_step``, ``row_step < width * point_step``, ``len(data) != row_step * height``, size fields
            that are not uint32 values, ``data`` that is not bytes). Nothing is allocated before the sizes
            are checked against ``len(data)``.
    """
    height, width = uint_field("PointCloud2", "height", msg.height), uint_field("PointCloud2", "width", msg.width)
    point_step = uint_field("PointCloud2", "point_step", msg.point_step)
    row_step = uint_field("PointCloud2", "row_step", msg.row_step)
    layout = _parse_fields(msg.fields, point_step, bool(msg.is_bigendian))
    by_name = {f.name: f for f in layout}
    organized = (height, width) if height > 1 else None
    n_points = height * width
    if n_points == 0 and any(axis not in by_name for axis in _XYZ):
        return CloudArrays(_readonly(np.zeros((0, 3), np.float32)), {}, 0, organized)
    _check_xyz_fields(by_name)
    keep = _fields_to_keep(layout, keep_fields)
    if n_points == 0:
        return _empty_cloud(layout, keep, organized)
    buf = _checked_data(msg, height, width, point_step, row_step)
    wanted = [by_name[name] for name in (*_XYZ, *keep)]
    records = _records_view(buf, wanted, height, width, point_step, row_step)
    points = _points_float32(buf, records, by_name, height, width, point_step, row_step)
    fields: dict[str, np.ndarray] = {}
    for name in keep:
        f = by_name[name]
        values = records[name].reshape((n_points,) if f.count == 1 else (n_points, f.count))
        fields[name] = values.astype(values.dtype.newbyteorder("="), copy=False)
    return _finite_cloud(points, fields, organized)


def _check_xyz_fields(by_name: Mapping[str, _Field]) -> None:
    """Raises ValueError unless x, y and z are fields holding one FLOAT32 or FLOAT64 each."""
    missing_xyz = [axis for axis in _XYZ if axis not in by_name]
    if missing_xyz:
        raise ValueError(
            f"PointCloud2 has no {'/'.join(missing_xyz)} field(s); fields are {sorted(by_name)}. "
            f"A cloud needs x, y and z"
        )
    for axis in _XYZ:
        f = by_name[axis]
        if f.dtype.kind != "f" or f.count != 1:
            raise ValueError(
                f"PointCloud2 field {axis!r} is {DATATYPE_NAMES[DATATYPE_OF_DTYPE[f.dtype.newbyteorder('=')]]} "
                f"x{f.count}; x, y and z must be single FLOAT32 or FLOAT64 values (metres)"
            )


def _fields_to_keep(layout: Sequence[_Field], keep_fields: Sequence[str] | None) -> list[str]:
    """The non-xyz field names to return: all of them, or ``keep_fields`` (deduplicated, each one present)."""
    others = [f.name for f in layout if f.name not in _XYZ]
    if keep_fields is None:
        return others
    keep = list(dict.fromkeys([keep_fields] if isinstance(keep_fields, str) else keep_fields))
    absent = [name for name in keep if name not in others]
    if absent:
        raise ValueError(f"PointCloud2 has no field(s) {absent} to keep; its non-xyz fields are {others}")
    return keep


def _checked_data(msg: Any, height: int, width: int, point_step: int, row_step: int) -> np.ndarray:
    """``msg.data`` as a uint8 array, after checking the size fields against each other and its length."""
    n_points = height * width
    if point_step <= 0:
        raise ValueError(f"PointCloud2 has point_step={point_step} for {n_points} points; it must be > 0")
    if row_step < width * point_step:
        raise ValueError(
            f"PointCloud2 has row_step={row_step} but width*point_step = {width}*{point_step} = "
            f"{width * point_step}; row_step must be at least that"
        )
    buf = message_bytes(msg.data)
    if buf.size != row_step * height:
        raise ValueError(
            f"PointCloud2 data has {buf.size} bytes but row_step*height = {row_step}*{height} = "
            f"{row_step * height}; the message is truncated or its size fields are wrong"
        )
    return buf


def _records_view(buf: np.ndarray, wanted: Sequence[_Field], height: int, width: int, point_step: int,
                  row_step: int) -> np.ndarray:
    """(height, width) structured view of ``buf`` with the ``wanted`` fields (no copy)."""
    struct = np.dtype({
        "names": [f.name for f in wanted],
        "formats": [f.dtype if f.count == 1 else (f.dtype, (f.count,)) for f in wanted],
        "offsets": [f.offset for f in wanted],
        "itemsize": point_step,
    })
    return np.ndarray((height, width), dtype=struct, buffer=buf, strides=(row_step, point_step))


def _points_float32(buf: np.ndarray, records: np.ndarray, by_name: Mapping[str, _Field], height: int, width: int,
                    point_step: int, row_step: int) -> np.ndarray:
    """(N, 3) float32 x/y/z, a view of ``buf`` when they are three adjacent native float32 values."""
    n_points = height * width
    x, y, z = (by_name[a] for a in _XYZ)
    packed_f32 = (
        x.dtype == y.dtype == z.dtype and x.dtype.itemsize == 4
        and y.offset == x.offset + 4 and z.offset == x.offset + 8
    )
    if packed_f32:  # one strided (N, 3) view of the buffer
        xyz = np.ndarray((height, width, 3), dtype=x.dtype, buffer=buf, offset=x.offset,
                         strides=(row_step, point_step, 4))
        return xyz.reshape(n_points, 3).astype(np.float32, copy=False)
    points = np.empty((n_points, 3), dtype=np.float32)
    with np.errstate(over="ignore"):  # FLOAT64 beyond float32's range becomes inf: dropped and counted later
        for column, axis in enumerate(_XYZ):
            points[:, column] = records[axis].reshape(n_points)
    return points


def _finite_cloud(points: np.ndarray, fields: dict[str, np.ndarray], organized: tuple[int, int] | None) -> CloudArrays:
    """Read-only :class:`CloudArrays` of the rows whose x, y and z are finite (the others counted in ``dropped``)."""
    finite = np.isfinite(points).all(axis=1)
    dropped = int(points.shape[0] - np.count_nonzero(finite))
    if dropped:
        points = points[finite]
        fields = {name: values[finite] for name, values in fields.items()}
    return CloudArrays(
        points=_readonly(points),
        fields={name: _readonly(values) for name, values in fields.items()},
        dropped=dropped,
        organized_shape=organized,
    )


# ---------------------------------------------------------------------------------------------- writing


def pointfield_datatype(dtype: np.dtype, name: str = "") -> int:
    """The PointField datatype constant for a numpy dtype (bool is written as UINT8).

    Raises ValueError for dtypes PointField cannot hold (64-bit integers, float16, complex, strings).
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return UINT8
    code = DATATYPE_OF_DTYPE.get(dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"field {name!r} has dtype {dtype}, which PointField cannot hold (INT8..INT32, UINT8..UINT32, "
            f"FLOAT32, FLOAT64); cast it, e.g. .astype(np.float64) or .astype(np.uint32)"
        )
    return code


def arrays_to_pointcloud2(
    points: np.ndarray,
    factory: MessageFactory,
    *,
    header: Any = None,
    frame_id: str = "",
    stamp: Any = None,
    fields: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """Build a ``sensor_msgs/PointCloud2`` of ``factory``'s world from arrays.

    Args:
        points: (N, 3) float, metres, in the frame ``frame_id`` (or ``header.frame_id``); written as FLOAT32.
        factory: the message world to build in.
        header: a ``std_msgs/Header`` of either world to copy; or give ``frame_id`` and ``stamp`` (Time message
            or float seconds).
        fields: extra per-point fields, name -> (N,) or (N, count) array; dtype preserved (bool -> UINT8).

    Returns:
        A little-endian, ``height=1`` cloud; ``is_dense`` is true when every point is finite. Each field sits at
        its natural alignment after x/y/z (offsets 0, 4, 8); ``point_step`` is a multiple of 4.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    if points.dtype.kind not in "fiu":
        raise ValueError(f"points must be a real numeric array, got dtype {points.dtype}")
    n = points.shape[0]

    names, formats, offsets = list(_XYZ), ["<f4"] * 3, [0, 4, 8]
    columns: list[np.ndarray] = []
    datatypes: list[tuple[int, int]] = [(FLOAT32, 1)] * 3
    offset, align = 12, 4
    for name, values in (fields or {}).items():
        if not isinstance(name, str) or not name or name == PADDING_FIELD:
            raise ValueError(f"field names must be non-empty strings other than '_', got {name!r}")
        if name in _XYZ:
            raise ValueError(f"field {name!r} clashes with the x/y/z coordinates; pass coordinates in points")
        values = np.asarray(values)
        if values.ndim not in (1, 2) or values.shape[0] != n or (values.ndim == 2 and values.shape[1] < 1):
            raise ValueError(f"field {name!r} must be ({n},) or ({n}, count), got shape {values.shape}")
        code = pointfield_datatype(values.dtype, name)
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        count = 1 if values.ndim == 1 else values.shape[1]
        itemsize = values.dtype.itemsize
        offset = -(-offset // itemsize) * itemsize
        names.append(name)
        formats.append(values.dtype.newbyteorder("<") if count == 1 else (values.dtype.newbyteorder("<"), (count,)))
        offsets.append(offset)
        datatypes.append((code, count))
        columns.append(values)
        offset += itemsize * count
        align = max(align, itemsize)
    point_step = -(-offset // align) * align
    struct = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})

    records = np.zeros(n, dtype=struct)
    for column, axis in enumerate(_XYZ):
        records[axis] = points[:, column]
    for name, values in zip(names[3:], columns):
        records[name] = values
    is_dense = bool(np.isfinite(points).all())

    point_fields = [
        factory.new("sensor_msgs/msg/PointField", name=name, offset=off, datatype=code, count=count)
        for name, off, (code, count) in zip(names, offsets, datatypes)
    ]
    return factory.new(
        "sensor_msgs/msg/PointCloud2",
        header=make_header(factory, header, frame_id=frame_id, stamp=stamp),
        height=1,
        width=n,
        fields=point_fields,
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * n,
        data=uint8_sequence(factory, records.view(np.uint8).reshape(-1), owned=True),
        is_dense=is_dense,
    )


# ---------------------------------------------------------------------------------------------- colour


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB (or float 0..1) -> (N,) uint32 ``0x00RRGGBB``, the PCL/rviz ``rgb`` field."""
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4):
        raise ValueError(f"colors must be (N, 3) or (N, 4), got shape {colors.shape}")
    if colors.dtype.kind == "f":
        colors = np.clip(np.rint(colors * 255.0), 0, 255)
    c = colors[:, :3].astype(np.uint32)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """A packed ``rgb`` field ((N,) uint32, or float32 holding the same bits as PCL writes it) -> (N, 3) uint8."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype.itemsize != 4 or packed.dtype.kind not in "fiu":
        raise ValueError(f"a packed rgb field is 4 bytes (uint32 or float32), got dtype {packed.dtype}")
    bits = packed.view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)
