"""A catalogue of malformed ``sensor_msgs/PointCloud2`` messages for the live robustness checks
(``test_bad_input.py`` and ``bench/reliability.py live``). Built by hand (rclpy messages, and raw CDR bytes
where the wire allows garbage), independently of ``gen3d_ros.io``.

Each :class:`Malformed` says whether the completion stage must reject it (``must_reject``: a message no reader
can make a cloud of: wrong sizes, bad fields, no usable point, bytes that are not a PointCloud2) or may do
anything but die (valid-looking garbage: big-endian flag on little-endian data, random point bytes, a cloud of
one repeated point...). Raw byte payloads only make sense with the process worker (raw subscriptions); an rclpy
thread worker would deserialize them in the executor.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros_harness import make_cloud, plane_and_box


@dataclass
class Malformed:
    """One bad message: ``name``, ``payload`` (an rclpy PointCloud2, or serialized CDR ``bytes``)."""

    name: str
    payload: Any
    must_reject: bool = True


def _field(name: str, offset: int, datatype: int = 7, count: int = 1) -> Any:
    from sensor_msgs.msg import PointField

    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def _with(msg: Any, **changes: Any) -> Any:
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _serialized(msg: Any) -> bytes:
    from rclpy.serialization import serialize_message

    return bytes(serialize_message(msg))


def _patch_uint32(data: bytes, find: bytes, new_value: int, *, before: int | None = None) -> bytes:
    """``data`` with the uint32 (little-endian) at the start of ``find`` set to ``new_value``: its first
    occurrence, or its last one that starts before offset ``before``."""
    pos = data.index(find) if before is None else data.rindex(find, 0, before)
    return data[:pos] + struct.pack("<I", new_value) + data[pos + 4:]


def malformed_clouds(seed: int = 0) -> list[Malformed]:
    """45 bad messages of 28 kinds (see the module docstring); deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    good = plane_and_box(seed=seed, n_plane=1200, n_box=800)
    n = len(good)
    stamp = 1_000_000 + seed
    out: list[Malformed] = []

    def cloud(points: np.ndarray = good, **kw: Any) -> Any:
        return make_cloud(points, stamp_ns=stamp, **kw)

    # --- sizes -------------------------------------------------------------------------------------------------
    out.append(Malformed("empty cloud", cloud(np.zeros((0, 3), np.float32))))
    out.append(Malformed("width 0 with data", _with(cloud(), width=0, row_step=0)))
    out.append(Malformed("point_step smaller than its fields", cloud(field_step=8)))
    out.append(Malformed("point_step 0", cloud(field_step=0)))
    for cut in (0.5, 0.999):
        msg = cloud()
        msg.data = bytes(msg.data)[:int(len(msg.data) * cut)]
        out.append(Malformed(f"data truncated to {cut:.1%}", msg))
    msg = cloud()
    msg.data = bytes(msg.data) + b"\0" * 16
    out.append(Malformed("16 bytes more data than row_step*height", msg))
    out.append(Malformed("huge width with tiny data", _with(cloud(good[:1]), width=2**32 - 1, row_step=16)))
    out.append(Malformed("height*width overflows 64 bits", _with(cloud(good[:1]), height=2**32 - 1,
                                                                 width=2**32 - 1, row_step=2**32 - 1)))
    out.append(Malformed("row_step smaller than width*point_step", _with(cloud(), row_step=8 * n)))
    out.append(Malformed("organized 2 x n/2 with a wrong row_step", _with(cloud(), height=2, width=n // 2,
                                                                          row_step=16 * n // 2 + 4)))
    # --- fields ------------------------------------------------------------------------------------------------
    out.append(Malformed("no x field", _with(cloud(), fields=[_field("y", 4), _field("z", 8)])))
    out.append(Malformed("no fields at all", _with(cloud(), fields=[])))
    for datatype in (0, 9, 255):
        out.append(Malformed(f"x of datatype {datatype}", _with(cloud(), fields=[
            _field("x", 0, datatype), _field("y", 4), _field("z", 8)])))
    out.append(Malformed("x as INT32", _with(cloud(), fields=[_field("x", 0, 5), _field("y", 4), _field("z", 8)])))
    out.append(Malformed("x with count 3", _with(cloud(), fields=[_field("x", 0, 7, 3), _field("y", 4),
                                                                  _field("z", 8)])))
    out.append(Malformed("x offset past point_step", _with(cloud(), fields=[_field("x", 100), _field("y", 4),
                                                                            _field("z", 8)])))
    out.append(Malformed("x offset 2**32-1", _with(cloud(), fields=[_field("x", 2**32 - 1), _field("y", 4),
                                                                    _field("z", 8)])))
    out.append(Malformed("duplicate x fields", _with(cloud(), fields=[_field("x", 0), _field("x", 4),
                                                                      _field("y", 4), _field("z", 8)])))
    out.append(Malformed("x float64 over y (overlapping)", _with(cloud(), fields=[
        _field("x", 0, 8), _field("y", 4), _field("z", 8)]), must_reject=False))
    # --- values ------------------------------------------------------------------------------------------------
    out.append(Malformed("all-NaN cloud", cloud(np.full((800, 3), np.nan, np.float32))))
    out.append(Malformed("all +inf cloud", cloud(np.full((800, 3), np.inf, np.float32))))
    out.append(Malformed("NaN and -inf mix", cloud(np.where(rng.random((800, 3)) < 0.5, np.nan, -np.inf)
                                                   .astype(np.float32))))
    out.append(Malformed("10 points (< min_points)", cloud(good[:10])))
    out.append(Malformed("every point 1 km away", cloud(good + np.float32(1000.0))))
    out.append(Malformed("1e30 coordinates", cloud(np.full((500, 3), 1e30, np.float32))))
    out.append(Malformed("half the points NaN", cloud(np.where(rng.random((n, 1)) < 0.5, np.nan, good)
                                                      .astype(np.float32)), must_reject=False))
    out.append(Malformed("one point repeated 2000 times", cloud(np.tile(good[:1], (2000, 1))), must_reject=False))
    out.append(Malformed("big-endian flag on little-endian data", _with(cloud(), is_bigendian=True),
                         must_reject=False))
    for k in range(2):
        msg = cloud()
        msg.data = rng.integers(0, 256, len(msg.data), dtype=np.uint8).tobytes()
        out.append(Malformed(f"random point bytes #{k}", msg, must_reject=False))
    # --- raw CDR bytes (the process worker's node hands bytes to the stage process) -----------------------------
    valid = _serialized(cloud())
    for size in (3, 64, 4096):
        out.append(Malformed(f"{size} random bytes", rng.integers(0, 256, size, dtype=np.uint8).tobytes()))
    for cut in (0.1, 0.6):
        out.append(Malformed(f"CDR truncated to {cut:.0%}", valid[:int(len(valid) * cut)]))
    n_data = len(cloud().data)
    data_len = struct.pack("<I", n_data)  # the data sequence's length, just before the point bytes
    before_data = len(valid) - n_data
    out.append(Malformed("CDR data length 2**31", _patch_uint32(valid, data_len, 2**31, before=before_data)))
    out.append(Malformed("CDR data length 2**32-1", _patch_uint32(valid, data_len, 2**32 - 1, before=before_data)))
    out.append(Malformed("CDR row_step 2**31", _patch_uint32(valid, data_len, 2**31)))  # row_step comes first
    fields_start = struct.pack("<I", 4) + struct.pack("<I", 2) + b"x\0"  # 4 fields, the first named "x"
    out.append(Malformed("CDR fields count 2**30", _patch_uint32(valid, fields_start, 2**30)))
    frame = struct.pack("<I", len("lidar_test") + 1) + b"lidar_test\0"
    out.append(Malformed("CDR frame_id length 2**31", _patch_uint32(valid, frame, 2**31)))
    out.append(Malformed("CDR encapsulation header only", valid[:4]))
    out.append(Malformed("CDR big-endian encapsulation of little-endian body", b"\0\0" + valid[2:]))
    return out
