"""Property-based fuzzing of ``read_points`` on damaged point cloud files.

Small valid files of every supported kind are written once per module: PLY (binary little- and big-endian,
ascii, a triangle mesh, a polygon mesh), PCD (ascii, binary, binary_compressed by open3d), KITTI ``.bin``,
``.npy`` (plain, Fortran order, structured), text ``.xyz``, a gzip'd ``.xyz.gz`` and an octomap scan graph.
Hypothesis then damages them: header numbers replaced by boundary values (0, -1, 2**31, 2**32 - 1, 10**12,
words), header lines dropped or repeated, truncations, bit flips (anywhere, or only in the body), bytes
overwritten, inserted or appended, and a ``max_points`` cap around the true count. Every case goes through
:func:`harness.expect_clean_failure` with ``PointFileError`` the only allowed exception (and at most 64 MB
allocated), and what is read must be consistent:

- a file whose header was not touched, or whose header still says N points, never yields another count
  (points + dropped) than its header says; a truncated file never yields a different count;
- bit flips in the body of a fixed-layout binary file (KITTI, binary PCD, vertex-only binary PLY, npy) never
  change the count and never fail;
- nothing read has more than ``max_points`` points; points are finite float32, fields row-aligned.

Files written by our own writers (random clouds, non-finite rows) read back exactly and carry the marker.
Temporary files live under pytest's ``tmp_path_factory`` (one module-scoped folder; hypothesis examples reuse
one file name per format).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3d_ros.io.pointcloud2 import CloudArrays, unpack_rgb
from gen3d_ros.io.pointfiles import (
    DEFAULT_MAX_POINTS,
    PointFileError,
    read_points,
    write_kitti_bin,
    write_pcd,
    write_ply,
)
from gen3d_ros.outputs import written_by_gen3d

from .harness import examples, expect_clean_failure

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
N = 10  # points in every base file
NUMBERS = ["0", "1", "-1", "2", "7", "9", "11", "255", "65535", "2147483647", "2147483648", "4294967295",
           "1000000000", "1000000000000", "99999999999999999999", "x", "1e3", "", "0x10"]


@dataclass
class Base:
    """A valid file: ``data`` (bytes), the end of its header (0: no header), whether its body has a fixed layout
    (every byte flip keeps it readable with the same count), and its true point count."""

    suffix: str
    data: bytes = field(repr=False)
    header_end: int
    fixed_layout: bool
    count: int = N


def _points(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-20, 20, (n, 3)).astype(np.float32)


def _end_of(data: bytes, marker: bytes) -> int:
    """Offset just past the line holding ``marker`` (which may start with its own newline)."""
    at = data.index(marker)
    return data.index(b"\n", at + 1) + 1


def make_bases(folder: Path) -> dict[str, Base]:
    pts = _points()
    rng = np.random.default_rng(1)
    out: dict[str, Base] = {}

    def written(name: str, writer, *args, **kwargs) -> bytes:
        path = folder / name
        writer(path, *args, **kwargs)
        return path.read_bytes()

    data = written("k.bin", write_kitti_bin, pts, rng.uniform(0, 1, N))
    out["kitti"] = Base(".bin", data, 0, True)
    fields = {"intensity": rng.uniform(0, 1, N).astype(np.float32), "ring": np.arange(N, dtype=np.uint16),
              "normal": rng.normal(size=(N, 3)).astype(np.float32)}
    data = written("b.pcd", write_pcd, pts, fields=fields)
    out["pcd_binary"] = Base(".pcd", data, _end_of(data, b"\nDATA"), True)
    data = written("a.pcd", write_pcd, pts, fields=fields, binary=False)
    out["pcd_ascii"] = Base(".pcd", data, _end_of(data, b"\nDATA"), False)
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(rng.uniform(0, 1, (N, 3)))
    assert o3d.io.write_point_cloud(str(folder / "c.pcd"), cloud, compressed=True)
    data = (folder / "c.pcd").read_bytes()
    out["pcd_compressed"] = Base(".pcd", data, _end_of(data, b"\nDATA"), False)

    data = written("b.ply", write_ply, pts, colors=rng.integers(0, 255, (N, 3), dtype=np.uint8))
    out["ply_binary"] = Base(".ply", data, _end_of(data, b"end_header"), True)
    data = written("m.ply", write_ply, pts, faces=np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [7, 8, 9]]))
    out["ply_mesh"] = Base(".ply", data, _end_of(data, b"end_header"), False)
    vertex = np.zeros(N, dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("intensity", ">u2")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = pts[:, i]
    header = (b"ply\nformat binary_big_endian 1.0\nelement vertex 10\nproperty double x\nproperty double y\n"
              b"property double z\nproperty ushort intensity\nend_header\n")
    out["ply_big"] = Base(".ply", header + vertex.tobytes(), len(header), True)
    rows = "".join(f"{x!r} {y!r} {z!r} {i}\n" for (x, y, z), i in zip(pts.tolist(), range(N)))
    header = ("ply\nformat ascii 1.0\ncomment hand written\nelement vertex 10\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar label\nelement face 2\nproperty list uchar int vertex_indices\n"
              "end_header\n")
    out["ply_ascii"] = Base(".ply", (header + rows + "4 0 1 2 3\n3 4 5 6\n").encode(), len(header), False)

    for name, array in [("npy", np.column_stack([pts, rng.uniform(0, 1, N).astype(np.float32)])),
                        ("npy_fortran", np.asfortranarray(pts.astype(np.float64)))]:
        np.save(folder / f"{name}.npy", array)
        data = (folder / f"{name}.npy").read_bytes()
        out[name] = Base(".npy", data, _end_of(data, b"}"), True)
    structured = np.zeros(N, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("ring", "<u2")])
    for i, axis in enumerate("xyz"):
        structured[axis] = pts[:, i]
    np.save(folder / "s.npy", structured)
    data = (folder / "s.npy").read_bytes()
    out["npy_structured"] = Base(".npy", data, _end_of(data, b"}"), True)

    text = "# x y z intensity\n" + "".join(f"{x:.6f} {y:.6f} {z:.6f} {i}\n" for (x, y, z), i in zip(pts.tolist(),
                                                                                                   range(N)))
    out["xyz"] = Base(".xyz", text.encode(), 0, False)
    out["xyz_gz"] = Base(".xyz.gz", gzip.compress(text.encode(), mtime=0), 0, False)
    graph = "NODE 0 0 0 0 0 0\n" + "".join(f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in pts[:5].tolist()) + \
        "NODE 1 2 0 0 0 1.5707963\n" + "".join(f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in pts[5:].tolist())
    out["scan_graph"] = Base(".dat", graph.encode(), 0, False)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_pointfiles")


@pytest.fixture(scope="module")
def bases(folder: Path) -> dict[str, Base]:
    return make_bases(folder)


NAMES = ["kitti", "pcd_binary", "pcd_ascii", "pcd_compressed", "ply_binary", "ply_mesh", "ply_big", "ply_ascii",
         "npy", "npy_fortran", "npy_structured", "xyz", "xyz_gz", "scan_graph"]


def test_every_base_file_reads_completely(bases: dict[str, Base], folder: Path) -> None:
    assert sorted(bases) == sorted(NAMES)
    for name, base in bases.items():
        path = folder / f"base_{name}{base.suffix}"
        path.write_bytes(base.data)
        cloud = read_points(path)
        assert len(cloud) == base.count and cloud.dropped == 0, name
        if name != "scan_graph":  # (its second scan is moved by its NODE pose)
            np.testing.assert_allclose(cloud.points, _points(), atol=1e-3, err_msg=name)


def claimed_count(base: Base, data: bytes) -> int | None:
    """The point count the (possibly mutated) header states, read independently of the reader under test;
    None when the format has no header count or the header is unreadable."""
    head = data[:base.header_end + 64] if base.header_end else b""
    if base.suffix == ".ply":
        match = re.search(rb"\nelement vertex (\d+)\r?\n", head)
    elif base.suffix == ".pcd":
        match = re.search(rb"\nPOINTS (\d+)\n", head)
    elif base.suffix == ".npy":
        match = re.search(rb"'shape': \((\d+),", head)
    else:
        return None
    return int(match.group(1)) if match else None


def assert_consistent(cloud: CloudArrays, max_points: int) -> None:
    assert cloud.points.dtype == np.float32 and cloud.points.ndim == 2 and cloud.points.shape[1] == 3
    assert np.isfinite(cloud.points).all()
    assert len(cloud) + cloud.dropped <= max_points
    for values in cloud.fields.values():
        assert len(values) == len(cloud)


def read_case(folder: Path, name: str, base: Base, data: bytes, max_points: int) -> CloudArrays | PointFileError:
    path = folder / f"case_{name}{base.suffix}"
    path.write_bytes(data)
    result = expect_clean_failure(f"pointfiles.{name}", read_points, path, max_points=max_points,
                                  allowed=(PointFileError,))
    if isinstance(result, PointFileError):
        assert str(path) in str(result), result  # every message names the file
    else:
        assert_consistent(result, max_points)
    return result


# ---------------------------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw: st.DrawFn, base: Base) -> tuple[bytes, str]:
    """(damaged bytes, kind of damage)."""
    data = bytearray(base.data)
    kind = draw(st.sampled_from(["header_number", "header_number", "header_line", "truncate", "flip", "overwrite",
                                 "insert", "append"]))
    header = data[:base.header_end] if base.header_end else data
    if kind == "header_number":
        numbers = list(re.finditer(rb"-?\d+", bytes(header)))
        if numbers:
            match = draw(st.sampled_from(numbers))
            data[match.start():match.end()] = draw(st.sampled_from(NUMBERS)).encode()
    elif kind == "header_line":
        lines = bytes(header).split(b"\n")
        at = draw(st.integers(0, max(0, len(lines) - 2)))
        action = draw(st.sampled_from(["drop", "repeat", "swap"]))
        if action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, lines[at])
        elif at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], lines[at]
        data = bytearray(b"\n".join(lines)) + data[len(header):]
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "overwrite":
        at = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=16))
        data[at:at + len(junk)] = junk
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    else:
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data), kind


@settings(max_examples=examples(1700), **SETTINGS)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_damaged_files_fail_cleanly_or_read_what_their_header_says(bases: dict[str, Base], folder: Path, name: str,
                                                                   data: st.DataObject) -> None:
    base = bases[name]
    damaged, kind = data.draw(mutated(base), label="damage")
    max_points = data.draw(st.sampled_from([DEFAULT_MAX_POINTS, DEFAULT_MAX_POINTS, N, N - 1, 3]), label="max_points")
    result = read_case(folder, name, base, damaged, max_points)
    if isinstance(result, PointFileError):
        return
    count = len(result) + result.dropped
    claimed = claimed_count(base, damaged)
    if claimed is not None and base.suffix in (".ply", ".pcd") and kind != "header_line":
        assert count == claimed, (kind, count, claimed)
    if base.suffix == ".npy" and claimed is not None and name != "npy_structured":
        assert count == claimed
    if name == "kitti":
        assert count == len(damaged) // 16 and len(damaged) % 16 == 0


@settings(max_examples=examples(450), **SETTINGS)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_truncated_files_never_change_the_point_count(bases: dict[str, Base], folder: Path, name: str,
                                                      data: st.DataObject) -> None:
    base = bases[name]
    cut = data.draw(st.integers(0, len(base.data) - 1), label="cut")
    result = read_case(folder, name, base, base.data[:cut], DEFAULT_MAX_POINTS)
    if isinstance(result, PointFileError):
        return
    count = len(result) + result.dropped
    if name == "kitti":
        assert cut % 16 == 0 and count == cut // 16
    elif base.suffix in (".xyz", ".dat", ".xyz.gz"):  # no header: whole rows are lost, never invented
        assert count <= base.count
    else:  # a header count: all of it or an error
        assert count == base.count, (name, cut, len(base.data))
        # Binary bodies have exact sizes: any cut is an error. Only an ascii file can lose a last newline or the
        # last digits of its last value and still hold as many values as its header says.
        assert name in ("pcd_ascii", "ply_ascii"), (name, cut)


FIXED = [name for name in NAMES if name in ("kitti", "pcd_binary", "ply_binary", "ply_big", "npy", "npy_fortran",
                                            "npy_structured")]


@settings(max_examples=examples(400), **SETTINGS)
@given(name=st.sampled_from(FIXED), data=st.data())
def test_bit_flips_in_a_fixed_layout_body_never_change_the_count(bases: dict[str, Base], folder: Path, name: str,
                                                                 data: st.DataObject) -> None:
    base = bases[name]
    assert base.fixed_layout
    damaged = bytearray(base.data)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(base.header_end, len(damaged) - 1))
        damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    result = read_case(folder, name, base, bytes(damaged), DEFAULT_MAX_POINTS)
    assert isinstance(result, CloudArrays), result
    assert len(result) + result.dropped == base.count


# ---------------------------------------------------------------------------------------------- our writers


@settings(max_examples=examples(300), **SETTINGS)
@given(fmt=st.sampled_from(["ply", "ply_colors", "pcd_binary", "pcd_ascii", "kitti"]), n=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1), bad_rows=st.lists(st.integers(0, 39), max_size=3),
       extreme=st.sampled_from([0.0, 1e-30, 3.4e38, -3.4e38]))
def test_files_we_write_read_back_exactly_and_are_marked(folder: Path, fmt: str, n: int, seed: int,
                                                         bad_rows: list[int], extreme: float) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(scale=50.0, size=(n, 3)).astype(np.float32)
    if n:
        points[0, 0] = extreme
        for row in bad_rows:
            points[row % n, row % 3] = [np.nan, np.inf, -np.inf][row % 3]
    keep = np.isfinite(points).all(axis=1)
    intensity = rng.uniform(0, 255, n).astype(np.float32)
    colors = rng.integers(0, 255, (n, 3), dtype=np.uint8)
    suffix = {"kitti": ".bin"}.get(fmt, "." + fmt.split("_")[0])
    path = folder / f"ours_{fmt}{suffix}"
    if fmt.startswith("ply"):
        write_ply(path, points, colors=colors if fmt == "ply_colors" else None)
    elif fmt.startswith("pcd"):
        write_pcd(path, points, fields={"intensity": intensity}, binary=fmt == "pcd_binary")
    else:
        write_kitti_bin(path, points, intensity)
    cloud = expect_clean_failure(f"pointfiles.ours_{fmt}", read_points, path, allowed=())
    np.testing.assert_array_equal(cloud.points, points[keep])
    assert cloud.dropped == n - int(keep.sum())
    if fmt == "ply_colors":
        np.testing.assert_array_equal(unpack_rgb(cloud.fields["rgb"]), colors[keep])
    elif fmt != "ply":
        np.testing.assert_array_equal(cloud.fields["intensity"], intensity[keep])
    assert written_by_gen3d(path) == (fmt != "kitti")  # a .bin has no room for the marker
