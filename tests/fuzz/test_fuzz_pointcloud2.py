"""Property-based fuzzing of ``pointcloud2_to_arrays`` on rosbags-world ``sensor_msgs/PointCloud2`` messages.

Hypothesis builds *valid* clouds of random layout (x/y/z FLOAT32 or FLOAT64 plus up to three fields of any
PointField datatype and count, in any order, at unaligned offsets, with point and row padding, organised or not,
either byte order, some non-finite points) from known per-point values, then

- checks that valid clouds decode to exactly those values, and that the big-endian cloud decodes like the
  little-endian one;
- mutates them (field list: names, datatypes, offsets, counts, dropped or duplicated fields; point_step,
  row_step, height, width with boundary values, negative or past uint32; data truncated, extended or of another
  container type; is_bigendian) and runs each case through :func:`harness.expect_clean_failure`: a return or a
  ``ValueError`` is fine, anything else or more than 64 MB allocated fails; what is returned must be a consistent
  cloud (as many points + dropped as height*width says, finite float32 points, fields row-aligned);
- keeps some mutations valid on purpose (noise in padding bytes, is_dense flipped) and asserts the same points;
- round-trips mutated clouds through CDR with the gen3d typestore (decoding depends on the wire content only);
- feeds small mutated clouds to :class:`~gen3d_ros.pipeline.completion.CompletionStage`, which must reject or
  process every one, never fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3d_ros.io.messages import message_bytes, rosbags_factory
from gen3d_ros.io.pointcloud2 import CloudArrays, pointcloud2_to_arrays
from gen3d_ros.io.typestore import get_gen3d_typestore

from .harness import examples, expect_clean_failure

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
FACTORY = rosbags_factory()
CODES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
EXTRA_NAMES = ["intensity", "ring", "t", "rgb", "normal", "_"]
#: uint32 values written over size fields: zero, small off-by-ones, powers of two, the top of the range.
UINT32_EDGES = [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 16, 24, 2**16, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
#: What a rosbags dataclass (no type checks) may hold after a bad conversion: out of range or not an int.
NOT_UINT32 = [-1, -2**31, 2**32, 2**64, 1.5, float("nan"), "12", None]


@dataclass
class Cloud:
    """A valid cloud and the per-point values it was built from."""

    msg: object
    layout: list[tuple[str, int, int, int]]  # name, datatype, offset, count
    values: dict[str, np.ndarray]  # name -> (N,) or (N, count), native dtype, row-major over (height, width)
    height: int
    width: int
    covered: np.ndarray  # bool (point_step,): bytes of a point some field reads


@st.composite
def valid_clouds(draw: st.DrawFn, bigendian: bool | None = None) -> Cloud:
    xyz_types = draw(st.sampled_from([(7, 7, 7), (8, 8, 8), (7, 8, 7), (8, 7, 7)]))
    layout = [(axis, code, 1) for axis, code in zip("xyz", xyz_types)]
    for i in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(EXTRA_NAMES))
        if name != "_" and any(name == f[0] for f in layout):
            name = f"{name}{i}"
        layout.append((name, draw(st.integers(1, 8)), draw(st.integers(1, 3))))
    order = draw(st.permutations(range(len(layout))))
    offsets, pos = [0] * len(layout), draw(st.integers(0, 3))
    for i in order:
        offsets[i] = pos
        pos += np.dtype(CODES[layout[i][1]]).itemsize * layout[i][2] + draw(st.integers(0, 3))
    point_step = pos + draw(st.integers(0, 4))
    height, width = draw(st.integers(1, 3)), draw(st.integers(0, 4))
    row_step = width * point_step + draw(st.integers(0, 6))
    big = draw(st.booleans()) if bigendian is None else bigendian
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = height * width

    columns: list[np.ndarray] = []  # per layout entry ("_" may repeat)
    for (name, code, count) in layout:
        dtype = np.dtype(CODES[code])
        shape = (n,) if count == 1 else (n, count)
        if dtype.kind == "f":
            column = rng.normal(scale=10.0, size=shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            column = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        columns.append(column)
    if n:
        for row in draw(st.lists(st.integers(0, n - 1), max_size=2)):
            columns[draw(st.integers(0, 2))][row] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    order_char = ">" if big else "<"
    names = [f"__{i}" for i in range(len(layout))]  # "_" may repeat: build the record with unique names
    record = np.dtype({"names": names,
                       "formats": [order_char + CODES[c] if k == 1 else (order_char + CODES[c], (k,))
                                   for _, c, k in layout],
                       "offsets": offsets, "itemsize": point_step})
    rec = np.zeros(n, record)
    for key, column in zip(names, columns):
        rec[key] = column
    rows = rec.tobytes()
    pad = bytes(rng.integers(0, 256, row_step - width * point_step, dtype=np.uint8))
    data = b"".join(rows[r * width * point_step:(r + 1) * width * point_step] + pad for r in range(height))
    covered = np.zeros(point_step, bool)
    for (_, code, count), off in zip(layout, offsets):
        covered[off:off + np.dtype(CODES[code]).itemsize * count] = True
    fields = [FACTORY.new("sensor_msgs/msg/PointField", name=name, offset=off, datatype=code, count=count)
              for (name, code, count), off in zip(layout, offsets)]
    msg = FACTORY.new("sensor_msgs/msg/PointCloud2",
                      header=FACTORY.new("std_msgs/msg/Header", frame_id="lidar"), height=height, width=width,
                      fields=fields, is_bigendian=big, point_step=point_step, row_step=row_step,
                      data=np.frombuffer(data, np.uint8).copy(), is_dense=False)
    values = {name: column for (name, _, _), column in zip(layout, columns) if name != "_"}
    return Cloud(msg, [(n_, c, o, k) for (n_, c, k), o in zip(layout, offsets)], values, height, width, covered)


def assert_decodes_to_source(cloud: Cloud, arrays: CloudArrays) -> None:
    n = cloud.height * cloud.width
    source = np.stack([cloud.values[a].astype(np.float32) for a in "xyz"], axis=1)
    keep = np.isfinite(source).all(axis=1)
    np.testing.assert_array_equal(arrays.points, source[keep])
    assert arrays.dropped == n - int(keep.sum())
    assert arrays.organized_shape == ((cloud.height, cloud.width) if cloud.height > 1 else None)
    assert sorted(arrays.fields) == sorted(k for k in cloud.values if k not in ("x", "y", "z"))
    for name, column in arrays.fields.items():
        assert column.dtype == cloud.values[name].dtype and column.dtype.isnative
        np.testing.assert_array_equal(column, cloud.values[name][keep])


def assert_consistent(msg: object, arrays: CloudArrays) -> None:
    """What any successful decode must satisfy, whatever the input was."""
    n = int(msg.height) * int(msg.width)
    assert len(arrays) + arrays.dropped == n
    assert arrays.points.dtype == np.float32 and arrays.points.shape == (len(arrays), 3)
    assert np.isfinite(arrays.points).all()
    for column in arrays.fields.values():
        assert column.shape[0] == len(arrays) and column.dtype.isnative
    if n:  # never decoded from a buffer of another size than the header says
        assert message_bytes(msg.data).size == int(msg.row_step) * int(msg.height)


# ---------------------------------------------------------------------------------------------- valid clouds


@settings(max_examples=examples(500), **SETTINGS)
@given(cloud=valid_clouds())
def test_valid_clouds_of_any_layout_decode_to_their_values(cloud: Cloud) -> None:
    arrays = expect_clean_failure("pointcloud2.valid", pointcloud2_to_arrays, cloud.msg, allowed=())
    assert_decodes_to_source(cloud, arrays)


@settings(max_examples=examples(300), **SETTINGS)
@given(little=valid_clouds(bigendian=False))
def test_big_endian_clouds_decode_like_the_little_endian_cloud_of_the_same_points(little: Cloud) -> None:
    big = big_endian_twin(little)
    a = pointcloud2_to_arrays(little.msg)
    b = expect_clean_failure("pointcloud2.bigendian", pointcloud2_to_arrays, big.msg, allowed=())
    assert big.msg.is_bigendian and not little.msg.is_bigendian
    np.testing.assert_array_equal(a.points, b.points)
    assert (a.dropped, a.organized_shape, list(a.fields)) == (b.dropped, b.organized_shape, list(b.fields))
    for name in a.fields:
        assert a.fields[name].dtype == b.fields[name].dtype
        np.testing.assert_array_equal(a.fields[name], b.fields[name])
    assert_decodes_to_source(big, b)


def big_endian_twin(cloud: Cloud) -> Cloud:
    """``cloud`` with every field byte-swapped and ``is_bigendian`` set (row padding copied as it is)."""
    msg = cloud.msg
    buf = message_bytes(msg.data).copy()
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    for r in range(cloud.height):
        for c in range(cloud.width):
            base = r * row_step + c * point_step
            for _, code, offset, count in cloud.layout:
                size = np.dtype(CODES[code]).itemsize
                for k in range(count):
                    start = base + offset + k * size
                    buf[start:start + size] = buf[start:start + size][::-1]
    twin = FACTORY.new("sensor_msgs/msg/PointCloud2", header=msg.header, height=msg.height, width=msg.width,
                       fields=msg.fields, is_bigendian=True, point_step=point_step, row_step=row_step, data=buf,
                       is_dense=msg.is_dense)
    return Cloud(twin, cloud.layout, cloud.values, cloud.height, cloud.width, cloud.covered)


@settings(max_examples=examples(250), **SETTINGS)
@given(cloud=valid_clouds(), data=st.data())
def test_mutations_that_keep_a_cloud_valid_keep_its_points(cloud: Cloud, data: st.DataObject) -> None:
    """Noise in bytes no field reads (point and row padding) and is_dense flipped change nothing."""
    msg = cloud.msg
    buf = message_bytes(msg.data).copy()
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    free = [r * row_step + c * point_step + b for r in range(cloud.height) for c in range(cloud.width)
            for b in np.flatnonzero(~cloud.covered)]
    free += [r * row_step + b for r in range(cloud.height) for b in range(cloud.width * point_step, row_step)]
    if free:
        for index in data.draw(st.lists(st.sampled_from(free), max_size=8)):
            buf[index] = data.draw(st.integers(0, 255))
    msg.data = buf
    msg.is_dense = data.draw(st.booleans())
    assert_decodes_to_source(cloud, expect_clean_failure("pointcloud2.keep_valid", pointcloud2_to_arrays, msg,
                                                         allowed=()))


# ---------------------------------------------------------------------------------------------- mutations

uint32_values = st.one_of(st.sampled_from(UINT32_EDGES), st.integers(0, 64))
any_values = st.one_of(uint32_values, st.sampled_from(NOT_UINT32))


@st.composite
def mutations(draw: st.DrawFn, in_range: bool = False) -> list[tuple]:
    """1 to 3 mutations; ``in_range`` keeps every value serialisable (uint32 fields in range, uint8 data)."""
    values = uint32_values if in_range else any_values
    kinds = ["height", "width", "point_step", "row_step", "offset", "datatype", "count", "name", "drop_field",
             "dup_field", "truncate", "extend", "bigendian"] + ([] if in_range else ["container"])
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        if kind in ("height", "width", "point_step", "row_step", "offset", "count"):
            out.append((kind, draw(st.integers(0, 8)), draw(values)))
        elif kind == "datatype":
            out.append((kind, draw(st.integers(0, 8)), draw(st.integers(0, 255) if in_range else
                                                           st.one_of(st.integers(0, 255), st.sampled_from(
                                                               [-1, 256, 2**32])))))
        elif kind == "name":  # (a NUL would not survive CDR, whose strings end at one)
            names = ["", "_", "x", "y", "z", "intensity", "ring", "é", "a b"] + ([] if in_range else ["x\x00"])
            out.append((kind, draw(st.integers(0, 8)), draw(st.sampled_from(names))))
        elif kind in ("drop_field", "dup_field"):
            out.append((kind, draw(st.integers(0, 8)), None))
        elif kind == "truncate":
            out.append((kind, draw(st.integers(0, 400)), None))
        elif kind == "extend":
            out.append((kind, draw(st.binary(min_size=1, max_size=24)), None))
        elif kind == "bigendian":
            out.append((kind, draw(st.sampled_from([True, False, 0, 1, 255])), None))
        else:
            out.append((kind, draw(st.sampled_from(["bytes", "list", "int16", "bad_list", "object"])), None))
    return out


def mutate(msg: object, changes: list[tuple]) -> object:
    fields = [FACTORY.new("sensor_msgs/msg/PointField", name=f.name, offset=f.offset, datatype=f.datatype,
                          count=f.count) for f in msg.fields]
    data = message_bytes(msg.data).copy()
    out = FACTORY.new("sensor_msgs/msg/PointCloud2", header=msg.header, height=msg.height, width=msg.width,
                      fields=fields, is_bigendian=msg.is_bigendian, point_step=msg.point_step,
                      row_step=msg.row_step, data=data, is_dense=msg.is_dense)
    containers = [a for kind, a, _ in changes if kind == "container"]
    for kind, a, b in changes:
        if kind in ("height", "width", "point_step", "row_step"):
            setattr(out, kind, b)
        elif kind in ("offset", "datatype", "count", "name") and out.fields:
            setattr(out.fields[a % len(out.fields)], kind, b)
        elif kind == "drop_field" and out.fields:
            out.fields.pop(a % len(out.fields))
        elif kind == "dup_field" and out.fields:
            f = out.fields[a % len(out.fields)]
            out.fields.append(FACTORY.new("sensor_msgs/msg/PointField", name=f.name, offset=f.offset,
                                          datatype=f.datatype, count=f.count))
        elif kind == "truncate":
            out.data = message_bytes(out.data)[:a].copy()
        elif kind == "extend":
            out.data = np.concatenate([message_bytes(out.data), np.frombuffer(a, np.uint8)])
        elif kind == "bigendian":
            out.is_bigendian = a
    if containers:  # last: the other changes edit the data as a numpy byte array
        raw = message_bytes(out.data)
        out.data = {"bytes": raw.tobytes(), "list": raw.tolist(), "int16": raw[: raw.size // 2 * 2].view(np.int16),
                    "bad_list": raw.tolist() + [256], "object": raw.astype(object)}[containers[-1]]
    return out


@settings(max_examples=examples(1400), **SETTINGS)
@given(cloud=valid_clouds(), changes=mutations())
def test_mutated_clouds_fail_cleanly_or_decode_consistently(cloud: Cloud, changes: list[tuple]) -> None:
    msg = mutate(cloud.msg, changes)
    result = expect_clean_failure("pointcloud2.mutated", pointcloud2_to_arrays, msg, allowed=(ValueError,))
    if isinstance(result, CloudArrays):
        assert_consistent(msg, result)
    else:
        assert str(result)  # a message that says something


def outcome(msg: object) -> tuple:
    try:
        arrays = pointcloud2_to_arrays(msg)
    except ValueError as exc:
        return ("error", str(exc))
    return ("ok", arrays.points.tobytes(), arrays.dropped, arrays.organized_shape,
            {k: (v.dtype.str, v.tobytes()) for k, v in arrays.fields.items()})


@settings(max_examples=examples(300), **SETTINGS)
@given(cloud=valid_clouds(), changes=mutations(in_range=True))
def test_cdr_round_trip_of_mutated_clouds_decodes_the_same(cloud: Cloud, changes: list[tuple]) -> None:
    store = get_gen3d_typestore()
    msg = mutate(cloud.msg, changes)
    msg.is_bigendian = bool(msg.is_bigendian)  # a CDR bool
    back = store.deserialize_cdr(store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"),
                                 "sensor_msgs/msg/PointCloud2")
    expect_clean_failure("pointcloud2.cdr", pointcloud2_to_arrays, back, allowed=(ValueError,))
    assert outcome(back) == outcome(msg)


@pytest.fixture(scope="module")
def stage():
    from gen3d_ros.pipeline.completion import CompletionStage

    return CompletionStage()


@settings(max_examples=examples(150), **SETTINGS)
@given(cloud=valid_clouds(), changes=st.one_of(st.just([]), mutations()))
def test_completion_stage_rejects_every_small_or_malformed_cloud_never_fails(stage, cloud: Cloud,
                                                                            changes: list[tuple]) -> None:
    before = (stage.stats.processed, stage.stats.rejected, stage.stats.failed)
    msg = mutate(cloud.msg, changes)
    outputs = expect_clean_failure("pointcloud2.completion_stage", stage.process, "cloud", msg, FACTORY,
                                   allowed=())
    # Clouds here hold at most 12 points, under the stage's min_points (50): every one is rejected, with a reason.
    assert outputs == []
    assert stage.stats.failed == before[2], stage.stats.last_error
    assert stage.stats.rejected == before[1] + 1
    assert stage.stats.last_error.startswith("rejected: ")
