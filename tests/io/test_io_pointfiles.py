"""Point cloud files: KITTI .bin, .pcd (ascii/binary/binary_compressed), .ply, .npy, text and scan graphs."""

from __future__ import annotations

import bz2
import struct

import numpy as np
import pytest

from gen3d_ros.io.pointcloud2 import unpack_rgb
from gen3d_ros.io.pointfiles import (
    lzf_decompress,
    read_points,
    read_scan_graph,
    write_kitti_bin,
    write_pcd,
    write_ply,
)


def grid_points(n_side: int = 10) -> np.ndarray:
    """A regular grid (compressible, exactly representable in float32), metres."""
    g = np.arange(n_side, dtype=np.float32) * 0.25
    return np.stack(np.meshgrid(g, g - 1.0, g + 2.0, indexing="ij"), axis=-1).reshape(-1, 3)


def test_kitti_bin_round_trips_and_drops_nan_rows(tmp_path):
    points = grid_points(5)
    intensity = np.linspace(0, 1, len(points), dtype=np.float32)
    points[[3, 10], 1] = np.nan
    path = tmp_path / "000000.bin"
    write_kitti_bin(path, points, intensity)
    assert path.stat().st_size == len(points) * 16

    cloud = read_points(path)
    keep = np.setdiff1d(np.arange(len(points)), [3, 10])
    assert cloud.dropped == 2
    np.testing.assert_array_equal(cloud.points, points[keep])
    np.testing.assert_array_equal(cloud.fields["intensity"], intensity[keep])


def test_kitti_bin_of_wrong_size_is_rejected(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(20))
    with pytest.raises(ValueError, match="20 bytes, not a multiple of 16"):
        read_points(path)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_pcd_round_trips_fields_of_every_kind(tmp_path, binary):
    points = grid_points(4) + np.float32(0.1)
    n = len(points)
    fields = {
        "intensity": np.linspace(0, 100, n).astype(np.float32),
        "ring": (np.arange(n) % 32).astype(np.uint16),
        "label": (np.arange(n) - 30).astype(np.int8),
        "time": np.linspace(0, 0.1, n),  # float64
        "normal": np.tile(np.float32([0.0, 0.6, 0.8]), (n, 1)),  # COUNT 3
        "id": np.arange(n, dtype=np.uint64) + 2**40,
    }
    path = tmp_path / "cloud.pcd"
    write_pcd(path, points, fields=fields, binary=binary)
    header = path.read_bytes().split(b"DATA")[0].decode()
    assert "FIELDS x y z intensity ring label time normal id" in header
    assert "TYPE F F F F U I F F U" in header and "COUNT 1 1 1 1 1 1 1 3 1" in header

    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, points)
    for name, values in fields.items():
        assert cloud.fields[name].dtype == values.dtype, name
        np.testing.assert_array_equal(cloud.fields[name], values, err_msg=name)


def test_organised_ascii_pcd_with_nans_keeps_shape_and_counts_drops(tmp_path):
    path = tmp_path / "organised.pcd"
    path.write_text(
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z _ intensity\nSIZE 4 4 4 1 4\nTYPE F F F U F\nCOUNT 1 1 1 4 1\n"
        "WIDTH 3\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 6\nDATA ascii\n"
        "1 2 3 0 0 0 0 10\nnan nan nan 0 0 0 0 11\n4 5 6 0 0 0 0 12\n"
        "7 8 9 0 0 0 0 13\n1 nan 1 0 0 0 0 14\n0.5 0.25 -1 0 0 0 0 15\n"
    )
    cloud = read_points(path)
    assert cloud.organized_shape == (2, 3) and cloud.dropped == 2
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [0.5, 0.25, -1]])
    np.testing.assert_array_equal(cloud.fields["intensity"], [10, 12, 13, 15])
    assert list(cloud.fields) == ["intensity"]  # "_" padding dropped


def test_lzf_decoder_handles_literals_and_overlapping_back_references():
    # "abc" literal, then a 9-byte back reference 3 back (overlapping): "abcabcabcabc".
    assert lzf_decompress(bytes([0x02]) + b"abc" + bytes([0xE0, 0x00, 0x02]), 12) == b"abcabcabcabc"
    # "abcd" literal, then a 4-byte reference 4 back, then literal "!".
    assert lzf_decompress(bytes([0x03]) + b"abcd" + bytes([0x40, 0x03, 0x00]) + b"!", 9) == b"abcdabcd!"
    with pytest.raises(ValueError, match="expected 10"):
        lzf_decompress(bytes([0x02]) + b"abc", 10)
    with pytest.raises(ValueError, match="back reference points 5 bytes back with only 3 decoded"):
        lzf_decompress(bytes([0x02]) + b"abc" + bytes([0x20, 0x04]), 6)


def test_binary_compressed_pcd_written_by_open3d_is_read(tmp_path):
    import open3d as o3d

    points = grid_points(12)
    colors = np.stack([np.arange(len(points)) % 256, np.full(len(points), 17), np.arange(len(points)) // 7 % 256],
                      axis=1).astype(np.uint8)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(colors / 255.0)
    path = tmp_path / "compressed.pcd"
    assert o3d.io.write_point_cloud(str(path), cloud, compressed=True)
    raw = path.read_bytes()
    assert b"DATA binary_compressed" in raw
    body = raw.split(b"DATA binary_compressed\n", 1)[1]
    compressed, plain = struct.unpack("<II", body[:8])
    assert compressed < plain  # real LZF back references were exercised

    read = read_points(path)
    np.testing.assert_array_equal(read.points, points)
    np.testing.assert_array_equal(unpack_rgb(read.fields["rgb"]), colors)


def test_ply_round_trips_points_and_colours(tmp_path):
    points = grid_points(6)
    colors = (np.arange(len(points) * 3).reshape(-1, 3) % 256).astype(np.uint8)
    path = tmp_path / "cloud.ply"
    write_ply(path, points, colors=colors)
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, points)
    np.testing.assert_array_equal(unpack_rgb(cloud.fields["rgb"]), colors)

    write_ply(path, points)
    assert read_points(path).fields == {}


def test_npy_plain_and_structured_arrays_are_read(tmp_path):
    table = np.column_stack([grid_points(3), np.arange(27.0)])
    np.save(tmp_path / "xyzi.npy", table)
    cloud = read_points(tmp_path / "xyzi.npy")
    np.testing.assert_array_equal(cloud.points, table[:, :3].astype(np.float32))
    np.testing.assert_array_equal(cloud.fields["intensity"], np.arange(27.0))

    structured = np.zeros(4, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("ring", "u2")])
    structured["x"] = [1, 2, np.nan, 4]
    structured["ring"] = [5, 6, 7, 8]
    np.save(tmp_path / "structured.npy", structured)
    cloud = read_points(tmp_path / "structured.npy")
    assert cloud.dropped == 1
    np.testing.assert_array_equal(cloud.fields["ring"], [5, 6, 8])

    np.save(tmp_path / "flat.npy", np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"numeric \(N, 3\+\) array, got shape \(5, 2\)"):
        read_points(tmp_path / "flat.npy")


def test_text_points_with_comments_and_extra_columns(tmp_path):
    path = tmp_path / "cloud.xyz"
    path.write_text("# x y z r g b\n1 2 3 10 20 30\n4.5 5 6 11 21 31\n\n7 8 nan 12 22 32\n")
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [4.5, 5, 6]])
    assert cloud.dropped == 1 and sorted(cloud.fields) == ["col3", "col4", "col5"]
    np.testing.assert_array_equal(cloud.fields["col5"], [30, 31])

    csv = tmp_path / "cloud.txt"
    csv.write_text("1,2,3,0.5\n4,5,6,0.25\n")
    np.testing.assert_array_equal(read_points(csv).fields["intensity"], [0.5, 0.25])


def test_octomap_scan_graph_log_is_transformed_into_one_frame(tmp_path):
    text = (
        "# octomap log\n"
        "NODE 0 0 0 0 0 0\n"
        "1 0 0\n0 2 0\n"
        f"NODE 10 0 1 0 0 {np.pi / 2!r}\n"  # sensor at (10, 0, 1), yawed 90 degrees
        "1 0 0\n0 0 3\nnan 0 0\n"
    )
    path = tmp_path / "scan.dat.bz2"
    path.write_bytes(bz2.compress(text.encode()))

    scans = read_scan_graph(path)
    assert len(scans) == 2
    np.testing.assert_array_equal(scans[1].pose, [10, 0, 1, 0, 0, np.pi / 2])
    np.testing.assert_array_equal(scans[1].points, [[1, 0, 0], [0, 0, 3]])

    cloud = read_points(path)
    assert cloud.dropped == 1
    np.testing.assert_allclose(cloud.points, [[1, 0, 0], [0, 2, 0], [10, 1, 1], [10, 0, 4]], atol=1e-6)


def test_scan_graph_transform_matches_roll_pitch_yaw_convention():
    from gen3d_ros.io.pointfiles import ScanNode

    roll, pitch, yaw = 0.3, -0.2, 1.1
    T = ScanNode(np.array([1.0, 2.0, 3.0, roll, pitch, yaw]), np.zeros((0, 3), np.float32)).transform()

    def rot(axis, angle):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        R = np.eye(3)
        R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
        return R

    np.testing.assert_allclose(T[:3, :3], rot(2, yaw) @ rot(1, pitch) @ rot(0, roll), atol=1e-12)
    np.testing.assert_array_equal(T[:3, 3], [1, 2, 3])


def test_unknown_extension_and_missing_file_are_reported(tmp_path):
    odd = tmp_path / "cloud.las"
    odd.write_bytes(b"LASF")
    with pytest.raises(ValueError, match=r"'\.las'.*supported: \.bin, \.pcd, \.ply, \.npy"):
        read_points(odd)
    missing = tmp_path / "nowhere.pcd"
    with pytest.raises(FileNotFoundError, match="nowhere.pcd"):
        read_points(missing)


def test_truncated_binary_pcd_is_rejected(tmp_path):
    path = tmp_path / "short.pcd"
    write_pcd(path, grid_points(3))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"binary body has 319 bytes but 27 points x 12 bytes = 324"):
        read_points(path)


def test_write_pcd_rejects_unstorable_fields(tmp_path):
    with pytest.raises(ValueError, match=r"field names must be unique non-empty words"):
        write_pcd(tmp_path / "a.pcd", grid_points(2), fields={"bad name": np.zeros(8)})
    with pytest.raises(ValueError, match=r"field 'tag' has dtype <U1"):
        write_pcd(tmp_path / "a.pcd", grid_points(2), fields={"tag": np.array(list("abcdefgh"))})


# ---------------------------------------------------------------------------------------------- malformed files

import gzip  # noqa: E402
import tracemalloc  # noqa: E402

from gen3d_ros.io.pointfiles import DEFAULT_MAX_POINTS, PointFileError  # noqa: E402
from gen3d_ros.outputs import GENERATOR, written_by_gen3d  # noqa: E402


def peak_mb(fn, *args, **kwargs):
    """(result or raised exception, peak traced MB) of one call."""
    tracemalloc.start()
    try:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            result = exc
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_truncated_binary_ply_is_rejected_not_zero_filled(tmp_path):
    path = tmp_path / "cloud.ply"
    write_ply(path, grid_points(5))  # 125 points x 12 bytes
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])
    with pytest.raises(PointFileError, match=rf"PLY {path} header says 125 vertices x 12 bytes but the file has "
                                             rf"1493 bytes after its header: truncated or corrupt"):
        read_points(path)


@pytest.mark.parametrize("count", [10**8, 10**9, 10**12])
def test_ply_header_claiming_huge_counts_fails_fast_without_allocating(tmp_path, count):
    path = tmp_path / "huge.ply"
    write_ply(path, grid_points(4))
    path.write_bytes(path.read_bytes().replace(b"element vertex 64\n", f"element vertex {count}\n".encode()))
    error, peak = peak_mb(read_points, path)
    assert isinstance(error, PointFileError) and peak < 4
    assert f"holds {count} points, more than max_points={DEFAULT_MAX_POINTS}" in str(error)
    error, peak = peak_mb(read_points, path, max_points=10**13)  # past the cap: the size check still holds
    assert isinstance(error, PointFileError) and peak < 4
    assert f"header says {count} vertices x 12 bytes but the file has 768 bytes after its header" in str(error)


def test_ply_list_length_of_four_billion_is_an_early_end_not_an_allocation(tmp_path):
    path = tmp_path / "mesh.ply"
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
              b"property float z\nelement face 1\nproperty list uint int vertex_indices\nend_header\n")
    path.write_bytes(header + np.zeros(3, "<f4").tobytes() + np.array([4_000_000_000], "<u4").tobytes() + bytes(12))
    error, peak = peak_mb(read_points, path)
    assert isinstance(error, PointFileError) and peak < 4, error
    assert "element 'face': row 0: property 'vertex_indices': early end-of-file" in str(error)


def test_ascii_and_big_endian_ply_and_polygon_meshes_are_read(tmp_path):
    ascii_ply = tmp_path / "ascii.ply"
    ascii_ply.write_text("ply\nformat ascii 1.0\ncomment hand written\nelement vertex 3\nproperty double x\n"
                         "property double y\nproperty double z\nproperty ushort red\nproperty ushort green\n"
                         "property ushort blue\nproperty float intensity\nelement face 1\n"
                         "property list uchar int vertex_indices\nend_header\n"
                         "1 2 3 65535 0 0 0.5\n4 5 6 0 65535 0 1.5\nnan 0 0 0 0 65535 2.5\n3 0 1 2\n")
    cloud = read_points(ascii_ply)
    np.testing.assert_array_equal(cloud.points, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(unpack_rgb(cloud.fields["rgb"]), [[255, 0, 0], [0, 255, 0]])
    np.testing.assert_array_equal(cloud.fields["intensity"], np.float32([0.5, 1.5]))
    assert cloud.dropped == 1

    big = tmp_path / "big.ply"  # big-endian binary, a quad and a triangle (not all triangles: row-by-row path)
    vertex = np.array([(1.0, 2.0, 3.0, 0.0, 0.0, 1.0), (4.0, 5.0, 6.0, 0.0, 1.0, 0.0),
                       (7.0, 8.0, 9.0, 1.0, 0.0, 0.0), (0.5, 0.25, 0.125, 0.0, 0.0, 1.0)],
                      dtype=[(n, ">f4") for n in ("x", "y", "z", "nx", "ny", "nz")])
    faces = np.array([4], ">u1").tobytes() + np.arange(4, dtype=">i4").tobytes() + \
        np.array([3], ">u1").tobytes() + np.arange(3, dtype=">i4").tobytes()
    big.write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 4\n"
                    + b"".join(f"property float {n}\n".encode() for n in ("x", "y", "z", "nx", "ny", "nz"))
                    + b"element face 2\nproperty list uchar int vertex_indices\nend_header\n"
                    + vertex.tobytes() + faces)
    cloud = read_points(big)
    np.testing.assert_array_equal(cloud.points, np.stack([vertex[a] for a in "xyz"], axis=1))
    np.testing.assert_array_equal(cloud.fields["normals"][2], [1, 0, 0])
    assert cloud.fields["normals"].dtype.isnative


def test_write_ply_marks_its_header_keeps_float64_and_writes_faces(tmp_path):
    path = tmp_path / "cloud.ply"
    points = grid_points(3).astype(np.float64) + 1e5 + 1e-3  # needs float64 to round-trip
    write_ply(path, points, colors=np.full((27, 3), 0.5))
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\n")
    assert f"comment generated by {GENERATOR}\n" in header and "property double x" in header
    assert written_by_gen3d(path)
    from plyfile import PlyData

    data = PlyData.read(str(path))
    np.testing.assert_array_equal(data["vertex"]["x"], points[:, 0])
    assert set(data["vertex"]["red"]) == {128}

    mesh = tmp_path / "mesh.ply"
    write_ply(mesh, grid_points(2), faces=np.array([[0, 1, 2], [2, 3, 4]]))
    assert [f.tolist() for f in PlyData.read(str(mesh))["face"]["vertex_indices"]] == [[0, 1, 2], [2, 3, 4]]
    with pytest.raises(ValueError, match=r"faces index vertices 0..8 but there are 8 vertices"):
        write_ply(mesh, grid_points(2), faces=np.array([[0, 1, 8]]))
    with pytest.raises(ValueError, match=r"finite floats in 0..1"):
        write_ply(mesh, grid_points(2), colors=np.full((8, 3), np.nan))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_written_pcd_is_marked_and_kitti_bin_is_not(tmp_path, binary):
    write_pcd(tmp_path / "a.pcd", grid_points(2), binary=binary)
    assert written_by_gen3d(tmp_path / "a.pcd")
    write_kitti_bin(tmp_path / "a.bin", grid_points(2))
    assert not written_by_gen3d(tmp_path / "a.bin")  # no room for a marker: --force never replaces it
    (tmp_path / "user.pcd").write_bytes(b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nDATA ascii\n")
    assert not written_by_gen3d(tmp_path / "user.pcd")


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".bin"])
def test_writers_are_atomic_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch, suffix):
    import gen3d_ros.outputs as outputs

    path = tmp_path / f"cloud{suffix}"
    writer = {".ply": write_ply, ".pcd": write_pcd, ".bin": write_kitti_bin}[suffix]
    writer(path, grid_points(2))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(outputs.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        writer(path, grid_points(3))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left behind


def test_npy_header_claiming_a_trillion_rows_fails_fast(tmp_path):
    path = tmp_path / "cloud.npy"
    np.save(path, grid_points(3))
    raw = path.read_bytes()
    # same header length: the 11 extra digits take 11 of the padding spaces
    path.write_bytes(raw.replace(b"'shape': (27, 3), }" + b" " * 11, b"'shape': (1000000000000, 3), }", 1))
    error, peak = peak_mb(read_points, path, max_points=10**13)
    assert isinstance(error, PointFileError) and peak < 4
    assert str(error) == (f".npy {path} header says shape (1000000000000, 3) of float32 = 12000000000000 bytes but "
                          f"the file has 324 bytes after its header: truncated or corrupt")
    error, _ = peak_mb(read_points, path)
    assert "holds 1000000000000 points, more than max_points=20000000" in str(error)
    path.write_bytes(raw[:-1])
    with pytest.raises(PointFileError, match=r"= 324 bytes but the file has 323 bytes"):
        read_points(path)
    path.write_bytes(raw.replace(b"'<f4'", b"'|O' ", 1))
    with pytest.raises(PointFileError, match=r"holds dtype object"):
        read_points(path)


def test_npy_fortran_big_endian_and_version_3_arrays_are_read(tmp_path):
    table = np.asfortranarray(np.column_stack([grid_points(2), np.arange(8.0)]).astype(">f8"))
    np.save(tmp_path / "f.npy", table)
    cloud = read_points(tmp_path / "f.npy")
    np.testing.assert_array_equal(cloud.points, table[:, :3].astype(np.float32))
    assert cloud.fields["intensity"].dtype.isnative and cloud.fields["intensity"].tolist() == list(range(8))

    structured = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("Δt", "<f4")])
    structured["Δt"] = [1, 2, 3]
    with pytest.warns(UserWarning, match="format 3.0"):  # a non-latin-1 field name: numpy writes format 3.0
        np.save(tmp_path / "v3.npy", structured)
    assert (tmp_path / "v3.npy").read_bytes()[6:8] == b"\x03\x00"
    assert read_points(tmp_path / "v3.npy").fields["Δt"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("data", ["binary", "ascii", "binary_compressed"])
def test_pcd_claiming_a_trillion_points_fails_fast(tmp_path, data):
    import open3d as o3d

    path = tmp_path / "cloud.pcd"
    if data == "binary_compressed":
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(grid_points(3).astype(np.float64)))
        assert o3d.io.write_point_cloud(str(path), cloud, compressed=True)
    else:
        write_pcd(path, grid_points(3), binary=data == "binary")
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"POINTS 27\n", b"POINTS 1000000000000\n"))
    error, peak = peak_mb(read_points, path, max_points=10**13)
    assert isinstance(error, PointFileError) and peak < 4, error
    assert str(error).startswith(f"PCD {path} ")
    assert "1000000000000 points" in str(error)
    error, _ = peak_mb(read_points, path)
    assert f"holds 1000000000000 points, more than max_points={DEFAULT_MAX_POINTS}" in str(error)


@pytest.mark.parametrize(
    ("replace", "message"),
    [((b"POINTS 8", b"POINTS -1"), r"header has POINTS '-1'; expected an integer >= 0"),
     ((b"WIDTH 8", b"WIDTH eight"), r"header has WIDTH 'eight'"),
     ((b"COUNT 1 1 1", b"COUNT 1 1 0"), r"COUNT of field 'z' '0'; expected an integer >= 1"),
     ((b"COUNT 1 1 1", b"COUNT 1 1 99999999"), r"describes 400000004-byte points"),
     ((b"SIZE 4 4 4", b"SIZE 4 4 3"), r"field 'z' has TYPE F SIZE 3"),
     ((b"DATA binary", b"DATA lzma"), r"has DATA 'lzma'")],
    ids=["negative-points", "word-width", "zero-count", "huge-count", "bad-size", "bad-data"],
)
def test_pcd_header_values_are_checked(tmp_path, replace, message):
    path = tmp_path / "cloud.pcd"
    write_pcd(path, grid_points(2))
    path.write_bytes(path.read_bytes().replace(*replace))
    with pytest.raises(PointFileError, match=message):
        read_points(path)


def test_ascii_pcd_integer_field_out_of_range_is_reported(tmp_path):
    path = tmp_path / "ring.pcd"
    write_pcd(path, grid_points(2), fields={"ring": np.arange(8, dtype=np.uint8)}, binary=False)
    text = path.read_text().splitlines()
    text[-1] = text[-1].rsplit(" ", 1)[0] + " 300"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(PointFileError, match=r"field 'ring' \(uint8\) has the value 300.0 in point 7, outside 0..255"):
        read_points(path)


def test_lzf_refuses_impossible_sizes_before_allocating():
    with pytest.raises(ValueError, match=r"4 bytes of LZF data cannot decompress to 4000000000 bytes"):
        lzf_decompress(b"\x02abc", 4_000_000_000)
    with pytest.raises(ValueError, match=r"more than the expected 2 bytes"):
        lzf_decompress(b"\x02abc", 2)


def test_compressed_text_bombs_and_corrupt_streams_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xyz.gz"
    bomb.write_bytes(gzip.compress(b"1 2 3\n" * 200_000))  # 1.2 MB of text in ~3 kB
    error, peak = peak_mb(read_points, bomb, max_points=1000)
    assert isinstance(error, PointFileError) and peak < 8
    assert "holds more than 256000 bytes of text (max_points=1000 x 256 bytes)" in str(error)
    assert len(read_points(bomb, max_points=200_000)) == 200_000

    truncated = tmp_path / "cut.xyz.gz"
    truncated.write_bytes(gzip.compress(b"1 2 3\n" * 10)[:-6])
    with pytest.raises(PointFileError, match=rf"cannot decompress {truncated} \(\.xyz\.gz\).*corrupt or truncated"):
        read_points(truncated)


@pytest.mark.parametrize("suffix", [".bin", ".pcd", ".ply", ".npy", ".xyz"])
def test_max_points_is_honoured_by_every_format(tmp_path, suffix):
    path = tmp_path / f"cloud{suffix}"
    points = grid_points(2)  # 8 points
    if suffix == ".bin":
        write_kitti_bin(path, points)
    elif suffix == ".pcd":
        write_pcd(path, points)
    elif suffix == ".ply":
        write_ply(path, points)
    elif suffix == ".npy":
        np.save(path, points)
    else:
        path.write_text("\n".join(" ".join(map(str, row)) for row in points.tolist()) + "\n")
    assert len(read_points(path, max_points=8)) == 8
    with pytest.raises(PointFileError, match=r"holds (9|8) points, more than max_points=7"):
        read_points(path, max_points=7)
    with pytest.raises(ValueError, match=r"max_points must be a non-negative integer, got -1"):
        read_points(path, max_points=-1)


def test_scan_graph_with_a_non_finite_pose_is_rejected(tmp_path):
    path = tmp_path / "graph.dat"
    path.write_text("NODE 0 0 0 0 0 nan\n1 2 3\n")
    with pytest.raises(PointFileError, match=rf"{path}:1: NODE pose \[0.0, 0.0, 0.0, 0.0, 0.0, nan\] is not finite"):
        read_points(path)
