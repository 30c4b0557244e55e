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
