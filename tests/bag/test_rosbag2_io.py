"""rosbag2 read/write: round trips in both storages, type hashes, atomic writes, read-only input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from bagdata import T0_NS, cloud_msg, tree_fingerprint, write_cloud_bag, write_split_bag
from gen3d_ros.io.mesh_msgs import colors_to_rgba_msgs, marker_to_mesh, mesh_to_marker, mesh_to_shape_mesh
from gen3d_ros.io.messages import rosbags_factory
from gen3d_ros.io.pointcloud2 import pointcloud2_to_arrays
from gen3d_ros.io.rosbag2 import (BagError, BagReader, BagWriter, OutputExistsError, read_bag_info, read_messages,
                                  write_bag)
from gen3d_ros.io.typestore import get_gen3d_typestore

STORAGES = ["mcap", "sqlite3"]
VERTICES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
FACES = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3]], np.int32)
COLORS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)


def header(f, stamp_ns: int, frame_id: str = "lidar"):
    return f.new("std_msgs/msg/Header", frame_id=frame_id,
                 stamp=f.time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))


def completed_mesh(f, stamp_ns: int):
    return f.new("gen3d_ros/msg/CompletedMesh", header=header(f, stamp_ns),
                 mesh=mesh_to_shape_mesh(VERTICES, FACES, f), vertex_colors=colors_to_rgba_msgs(COLORS, f),
                 voxel_size=0.2, steps=3, input_points=1234, dropped_points=5, latency_ms=12.5,
                 model_id="test-model")


def three_topic_messages(n: int = 3) -> list[tuple[str, object, int]]:
    f = rosbags_factory()
    out = []
    for i in range(n):
        t = T0_NS + i * 100_000_000
        out.append(("/points", cloud_msg(i, t), t))
        out.append(("/gen3d/completion/mesh", completed_mesh(f, t), t + 1))
        out.append(("/gen3d/completion/mesh_marker",
                    mesh_to_marker(VERTICES, FACES, f, header=header(f, t), vertex_colors=COLORS), t + 2))
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip_keeps_cloud_completed_mesh_and_marker(tmp_path: Path, storage: str) -> None:
    written = three_topic_messages()
    out = write_bag(tmp_path / "bag", written, storage=storage)
    info = read_bag_info(out)
    assert info["storage"] == storage
    assert info["message_count"] == 9
    assert {k: v["type"] for k, v in info["topics"].items()} == {
        "/points": "sensor_msgs/msg/PointCloud2",
        "/gen3d/completion/mesh": "gen3d_ros/msg/CompletedMesh",
        "/gen3d/completion/mesh_marker": "visualization_msgs/msg/Marker",
    }
    read = list(read_messages(out))
    assert [(m.topic, m.log_time_ns) for m in read] == sorted([(t, ns) for t, _, ns in written], key=lambda x: x[1])
    for (topic, sent, t), got in zip(sorted(written, key=lambda x: x[2]), read):
        assert got.msg.header.frame_id == "lidar"
        assert got.msg.header.stamp.sec == sent.header.stamp.sec
        assert got.msg.header.stamp.nanosec == sent.header.stamp.nanosec
        if topic == "/points":
            np.testing.assert_array_equal(pointcloud2_to_arrays(got.msg).points, pointcloud2_to_arrays(sent).points)
            np.testing.assert_array_equal(pointcloud2_to_arrays(got.msg).fields["intensity"],
                                          pointcloud2_to_arrays(sent).fields["intensity"])
        elif topic == "/gen3d/completion/mesh":
            assert got.msg.model_id == "test-model" and got.msg.input_points == 1234 and got.msg.steps == 3
            assert got.msg.voxel_size == pytest.approx(0.2)
            assert len(got.msg.mesh.triangles) == len(FACES) and len(got.msg.vertex_colors) == len(VERTICES)
            np.testing.assert_array_equal(
                np.array([list(tri.vertex_indices) for tri in got.msg.mesh.triangles]), FACES)
        else:
            vertices, faces, colors = marker_to_mesh(got.msg)
            assert len(faces) == len(FACES)
            np.testing.assert_allclose(vertices[faces], VERTICES[FACES], atol=1e-6)


@pytest.mark.parametrize("name", ["single.mcap", "single.db3"])
def test_single_file_output_round_trips(tmp_path: Path, name: str) -> None:
    out = write_bag(tmp_path / name, three_topic_messages(1))
    assert out.is_file()
    assert [m.topic for m in read_messages(out)] == ["/points", "/gen3d/completion/mesh",
                                                     "/gen3d/completion/mesh_marker"]
    assert leftovers(tmp_path) == []


def test_single_file_suffix_conflicting_with_storage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="sqlite3"):
        BagWriter(tmp_path / "x.mcap", storage="sqlite3")


@pytest.mark.parametrize("storage", STORAGES)
def test_written_type_hashes_equal_gen3d_rihs01(tmp_path: Path, storage: str) -> None:
    out = write_bag(tmp_path / "bag", three_topic_messages(1), storage=storage)
    store = get_gen3d_typestore()
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8  # what ROS 2 Jazzy's rosbag2 writes
    hashes = {t["topic_metadata"]["type"]: t["topic_metadata"]["type_description_hash"]
              for t in meta["topics_with_message_count"]}
    assert hashes == {msgtype: store.hash_rihs01(msgtype) for msgtype in hashes}
    with BagReader(out) as bag:  # definitions and hashes are also inside the storage file
        for info in bag.topics.values():
            assert info.msgdef, f"{info.name}: no message definition stored"
            assert info.msgdef == store.generate_msgdef(info.msgtype, ros_version=2)[0]
            if storage == "sqlite3":
                assert info.digest == store.hash_rihs01(info.msgtype)


def test_completed_mesh_hash_equals_rosidl_generated_hash() -> None:
    """rosidl (the colcon build of msg/) and rosbags agree on the RIHS01 hash of our own message."""
    generated = (Path(__file__).resolve().parents[2] / "build/ros2/build/rosidl_generator_type_description"
                 / "gen3d_ros/msg/CompletedMesh.json")
    if not generated.exists():
        pytest.skip(f"no rosidl build output at {generated} (run scripts/build_interfaces.sh)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]}
    store = get_gen3d_typestore()
    for name, value in hashes.items():
        assert store.hash_rihs01(name) == value, name


@pytest.mark.parametrize("storage", STORAGES)
def test_messages_come_in_log_time_order_across_topics(tmp_path: Path, storage: str) -> None:
    f = rosbags_factory()
    times = [50, 10, 40, 20, 30, 60]
    out = write_bag(tmp_path / "bag", [(f"/t{i % 2}", header(f, t), t) for i, t in enumerate(times)],
                    storage=storage)
    assert [m.log_time_ns for m in read_messages(out)] == sorted(times)


def test_split_bag_files_are_merged_in_log_time_order(tmp_path: Path) -> None:
    f = rosbags_factory()
    parts = [[("/h", header(f, t), t) for t in (1, 3, 5)], [("/h", header(f, t), t) for t in (2, 4)]]
    bag = write_split_bag(tmp_path / "split", parts)
    assert len(list(bag.glob("*.mcap"))) == 2
    assert [m.log_time_ns for m in read_messages(bag)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("storage", STORAGES)
def test_reading_leaves_the_input_bag_untouched(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "in"
    write_cloud_bag(bag, 2, storage=storage)
    os.utime(bag, ns=(1_000_000_000, 1_000_000_000))
    before, dir_mtime = tree_fingerprint(bag), bag.stat().st_mtime_ns
    with BagReader(bag) as reader:
        for m in reader.messages():
            assert m.msg is not None
    assert tree_fingerprint(bag) == before
    assert bag.stat().st_mtime_ns == dir_mtime
    assert sorted(p.name for p in bag.iterdir()) == sorted(Path(p).name for p in before)


def test_existing_output_is_refused_without_force(tmp_path: Path) -> None:
    out = write_bag(tmp_path / "bag", three_topic_messages(1))
    before = tree_fingerprint(out)
    with pytest.raises(OutputExistsError, match="force"):
        write_bag(out, three_topic_messages(2))
    assert tree_fingerprint(out) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["bag", "bag.mcap"])
def test_force_replaces_an_existing_output(tmp_path: Path, name: str) -> None:
    out = write_bag(tmp_path / name, three_topic_messages(1))
    write_bag(out, three_topic_messages(2), force=True)
    assert read_bag_info(out)["message_count"] == 6
    assert leftovers(tmp_path) == []


class Boom(RuntimeError):
    pass


def failing_stream(n_good: int):
    for i, item in enumerate(three_topic_messages(2)):
        if i == n_good:
            raise Boom("disk on fire")
        yield item


@pytest.mark.parametrize("storage", STORAGES)
def test_failure_mid_write_leaves_no_output_and_no_temporaries(tmp_path: Path, storage: str) -> None:
    with pytest.raises(Boom):
        write_bag(tmp_path / "bag", failing_stream(3), storage=storage)
    assert not (tmp_path / "bag").exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_with_force_keeps_the_previous_output(tmp_path: Path) -> None:
    out = write_bag(tmp_path / "bag", three_topic_messages(1))
    before = tree_fingerprint(out)
    with pytest.raises(Boom):
        write_bag(out, failing_stream(4), force=True)
    assert tree_fingerprint(out) == before
    assert leftovers(tmp_path) == []


def test_interrupt_mid_write_is_cleaned_up_too(tmp_path: Path) -> None:
    writer = BagWriter(tmp_path / "bag.mcap").open()
    f = rosbags_factory()
    writer.write("/h", header(f, 1), 1)
    with pytest.raises(KeyboardInterrupt):
        with writer:  # __exit__ aborts on any exception, KeyboardInterrupt included
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_type_unknown_to_jazzy_is_decoded_with_the_definition_stored_in_the_bag(tmp_path: Path) -> None:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg("std_msgs/Header header\nfloat64[] values\nstring note", "acme_msgs/msg/Reading"))
    cls = store.types["acme_msgs/msg/Reading"]
    f = rosbags_factory()
    msg = cls(header=header(f, 7), values=np.array([1.5, -2.0]), note="hello")
    with BagWriter(tmp_path / "bag", typestore=store) as out:
        out.write("/reading", msg, 7, msgtype="acme_msgs/msg/Reading")
    assert "acme_msgs/msg/Reading" not in get_gen3d_typestore().types
    (got,) = list(read_messages(tmp_path / "bag"))
    assert got.msg.note == "hello" and got.msg.header.frame_id == "lidar"
    np.testing.assert_array_equal(got.msg.values, [1.5, -2.0])


def test_corrupt_message_bytes_raise_a_clear_bag_error(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "bag") as out:
        out.add_topic("/points", "sensor_msgs/msg/PointCloud2")
        out.write_raw("/points", b"\x00\x01\x00\x00garbage", 5)
    with BagReader(tmp_path / "bag") as bag:
        (m,) = list(bag.messages(decode=False))
        with pytest.raises(BagError, match="does not deserialise"):
            bag.decode(m)


def test_missing_or_unknown_inputs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BagReader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="metadata.yaml"):
        BagReader(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(BagError, match="not a rosbag2"):
        BagReader(tmp_path / "x.txt")
    write_cloud_bag(tmp_path / "bag", 1)
    with BagReader(tmp_path / "bag") as bag, pytest.raises(BagError, match="no topic"):
        list(bag.messages(["/nope"]))


def test_writing_a_message_of_the_rclpy_world_is_refused_with_a_hint(tmp_path: Path) -> None:
    class FakeRclpyHeader:  # what rclpy's generated classes look like to us: no __msgtype__
        frame_id = "lidar"

    with pytest.raises(TypeError, match="write_raw"):
        write_bag(tmp_path / "bag", [("/h", FakeRclpyHeader(), 1)])
    assert list(tmp_path.iterdir()) == []
