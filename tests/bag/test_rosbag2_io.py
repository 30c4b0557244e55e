"""rosbag2 read/write: round trips in both storages, type hashes, atomic writes, read-only input, CRCs and clear
errors for damaged bags, the gen3d_ros marker, QoS in the bag summary."""

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
from gen3d_ros.io.rosbag2 import (BagError, BagReader, BagWriter, OutputExistsError, bag_custom_data, read_bag_info,
                                  read_messages, write_bag)
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
        out.append(("/completion_node/mesh", completed_mesh(f, t), t + 1))
        out.append(("/completion_node/marker",
                    mesh_to_marker(VERTICES, FACES, f, header=header(f, t), vertex_colors=COLORS), t + 2))
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporaries (``.<name>.gen3d-tmp-<pid>-<id>``) and write probes left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if "tmp-" in p.name or "probe" in p.name)


@pytest.mark.parametrize("storage", STORAGES)
def test_round_trip_keeps_cloud_completed_mesh_and_marker(tmp_path: Path, storage: str) -> None:
    written = three_topic_messages()
    out = write_bag(tmp_path / "bag", written, storage=storage)
    info = read_bag_info(out)
    assert info["storage"] == storage
    assert info["message_count"] == 9
    assert {k: v["type"] for k, v in info["topics"].items()} == {
        "/points": "sensor_msgs/msg/PointCloud2",
        "/completion_node/mesh": "gen3d_ros/msg/CompletedMesh",
        "/completion_node/marker": "visualization_msgs/msg/Marker",
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
        elif topic == "/completion_node/mesh":
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
    assert [m.topic for m in read_messages(out)] == ["/points", "/completion_node/mesh",
                                                     "/completion_node/marker"]
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


# --------------------------------------------------------------------------------------------------- integrity

MCAP_MAGIC = b"\x89MCAP0\r\n"


def u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 8], "little")


def mcap_records(data: bytes) -> list[tuple[int, int, int]]:
    """``(offset, opcode, length)`` of the top-level records of an mcap file, walked independently of the
    reader under test."""
    out, pos = [], len(MCAP_MAGIC)
    while pos < len(data) - len(MCAP_MAGIC):
        out.append((pos, data[pos], u64(data, pos + 1)))
        if data[pos] == 0x02:
            break
        pos += 9 + u64(data, pos + 1)
    return out


def chunk_records(data: bytes, at: int) -> tuple[int, int]:
    """``(first, end)`` byte offsets of the (uncompressed) records inside the chunk record at ``at``."""
    name_len = int.from_bytes(data[at + 9 + 28:at + 9 + 32], "little")
    first = at + 9 + 32 + name_len + 8
    return first, at + 9 + u64(data, at + 1)


def set_chunk_crc(data: bytearray, at: int, crc: int) -> None:
    data[at + 9 + 24:at + 9 + 28] = crc.to_bytes(4, "little")


def test_mcap_crcs_are_the_ones_the_mcap_specification_defines(tmp_path: Path) -> None:
    import binascii

    write_cloud_bag(tmp_path / "b.mcap", 30)  # 2.2 MB: rosbags closes a chunk at 1 MiB, so several chunks
    data = (tmp_path / "b.mcap").read_bytes()
    records = mcap_records(data)
    chunks = [at for at, op, _ in records if op == 0x06]
    assert len(chunks) >= 2
    for at in chunks:
        first, end = chunk_records(data, at)
        stored = int.from_bytes(data[at + 9 + 24:at + 9 + 28], "little")
        assert stored == binascii.crc32(data[first:end]) != 0
    (data_end, op, _), = [r for r in records if r[1] == 0x0F]
    assert int.from_bytes(data[data_end + 9:data_end + 13], "little") == binascii.crc32(data[:data_end])
    footer = len(data) - len(MCAP_MAGIC) - 29
    summary_start = u64(data, footer + 9)
    assert summary_start == data_end + 13
    assert int.from_bytes(data[footer + 25:footer + 29], "little") == binascii.crc32(data[summary_start:footer + 25])


@pytest.mark.parametrize("form", ["bag", "bag.mcap"])
def test_a_flipped_payload_byte_fails_the_read_naming_the_bag(tmp_path: Path, form: str) -> None:
    out = tmp_path / form
    write_cloud_bag(out, 2)
    assert [m.msg.width for m in read_messages(out)] == [4500, 4500]  # the clean bag reads
    storage = out if out.is_file() else next(out.glob("*.mcap"))
    data = bytearray(storage.read_bytes())
    (chunk, *_), = [(at, op) for at, op, _ in mcap_records(bytes(data)) if op == 0x06]
    first, end = chunk_records(bytes(data), chunk)
    data[(first + end) // 2] ^= 0x10  # inside a cloud's point data: decodes fine, with a wrong coordinate
    storage.write_bytes(bytes(data))
    assert read_bag_info(out)["message_count"] == 2  # the index is intact
    with pytest.raises(BagError, match=rf"{out}.*chunk at byte {chunk} fails its CRC check"):
        list(read_messages(out))


def test_sqlite3_stores_no_checksums_so_a_flipped_payload_byte_reads_back_changed(tmp_path: Path) -> None:
    """The limit of the sqlite3 storage (SQLite pages and rosbag2 rows carry no checksum): payload damage is not
    detected, only damage to the database structure is (next test). Record to mcap when integrity matters."""
    import sqlite3

    write_cloud_bag(tmp_path / "b.db3", 1)
    before = next(read_messages(tmp_path / "b.db3")).raw
    con = sqlite3.connect(tmp_path / "b.db3")
    blob = bytearray(con.execute("SELECT data FROM messages").fetchone()[0])
    blob[len(blob) // 2] ^= 0x10
    con.execute("UPDATE messages SET data = ?", (bytes(blob),))
    con.commit()
    con.close()
    after = next(read_messages(tmp_path / "b.db3")).raw
    assert len(after) == len(before) and sum(a != b for a, b in zip(after, before)) == 1


def test_undeclared_channel_ids_are_counted_and_warned_once(tmp_path: Path, caplog) -> None:
    write_cloud_bag(tmp_path / "b.mcap", 3)
    data = bytearray((tmp_path / "b.mcap").read_bytes())
    (chunk, *_), = [(at, op) for at, op, _ in mcap_records(bytes(data)) if op == 0x06]
    first, end = chunk_records(bytes(data), chunk)
    pos, messages = first, []
    while pos < end:
        if data[pos] == 0x05:
            messages.append(pos)
        pos += 9 + u64(bytes(data), pos + 1)
    assert len(messages) == 3
    data[messages[1] + 9:messages[1] + 11] = (77).to_bytes(2, "little")  # channel 77 is never declared
    set_chunk_crc(data, chunk, 0)  # as a writer without CRCs leaves it
    (tmp_path / "c.mcap").write_bytes(bytes(data))
    caplog.set_level("WARNING", logger="gen3d_ros.io.rosbag2")
    with BagReader(tmp_path / "c.mcap") as bag:
        assert bag.skipped_records == 0  # the index still files the record under channel 1
        assert [m.log_time_ns for m in bag.messages()] == [T0_NS, T0_NS + 200_000_000]
        assert bag.skipped_records == 1
        assert [m.log_time_ns for m in bag.messages()] == [T0_NS, T0_NS + 200_000_000]
        assert bag.skipped_records == 1  # reading again does not count twice
    assert bag.skipped_records == 1
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert warnings == [f"bag {tmp_path / 'c.mcap'}: skipped 1 message record(s) whose channel/topic id the bag "
                        "does not declare (a corrupt or incompletely written bag)"]
    # Without a summary the reader scans the file, and the count is known from the start.
    footer = len(data) - len(MCAP_MAGIC) - 29
    data[footer + 9:footer + 17] = bytes(8)
    data[footer + 25:footer + 29] = bytes(4)
    (tmp_path / "d.mcap").write_bytes(bytes(data))
    assert read_bag_info(tmp_path / "d.mcap")["skipped_records"] == 1
    assert len(list(read_messages(tmp_path / "d.mcap"))) == 2


def test_sqlite3_rows_of_undeclared_topics_are_counted(tmp_path: Path) -> None:
    import sqlite3

    write_cloud_bag(tmp_path / "b.db3", 2)
    con = sqlite3.connect(tmp_path / "b.db3")
    con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (99, 5, x'00')")
    con.commit()
    con.close()
    info = read_bag_info(tmp_path / "b.db3")
    assert info["skipped_records"] == 1 and info["topics"]["/points"]["count"] == 2
    assert len(list(read_messages(tmp_path / "b.db3"))) == 2


def test_a_huge_record_length_is_a_bag_error_with_the_offset(tmp_path: Path) -> None:
    write_cloud_bag(tmp_path / "b.mcap", 1)
    data = bytearray((tmp_path / "b.mcap").read_bytes())
    records = mcap_records(bytes(data))
    (chunk, *_), = [(at, op) for at, op, _ in records if op == 0x06]
    first, _ = chunk_records(bytes(data), chunk)
    data[first + 1:first + 9] = (2**63).to_bytes(8, "little")  # first record inside the chunk
    set_chunk_crc(data, chunk, 0)
    (tmp_path / "inner.mcap").write_bytes(bytes(data))
    with pytest.raises(BagError, match=rf"inner.mcap.*chunk at byte {chunk}: record at chunk byte 0 claims "
                                       rf"{2**63} bytes"):
        list(read_messages(tmp_path / "inner.mcap"))
    data = bytearray((tmp_path / "b.mcap").read_bytes())
    summary = [at for at, op, _ in records if op == 0x03][-1]  # a schema record of the summary
    data[summary + 1:summary + 9] = (2**64 - 1).to_bytes(8, "little")
    data[-12:-8] = bytes(4)  # summary CRC "not computed", so rosbags parses the damaged record
    (tmp_path / "summary.mcap").write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"summary.mcap: not a readable mcap file: Truncated record at offset"):
        read_bag_info(tmp_path / "summary.mcap")


def test_truncated_zero_byte_and_foreign_files_are_bag_errors(tmp_path: Path) -> None:
    write_cloud_bag(tmp_path / "b.mcap", 2)
    data = (tmp_path / "b.mcap").read_bytes()
    cases = {"half.mcap": data[: len(data) // 2], "head.mcap": data[:20], "zero.mcap": b"",
             "text.mcap": b"not an mcap" * 10, "zero.db3": b"", "text.db3": b"hello" * 1000}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BagError, match=str(tmp_path / name)):
            read_bag_info(tmp_path / name)
    with pytest.raises(BagError, match="truncated"):
        read_bag_info(tmp_path / "half.mcap")
    with pytest.raises(BagError, match="empty"):
        read_bag_info(tmp_path / "zero.db3")
    with pytest.raises(BagError, match="not a database"):
        read_bag_info(tmp_path / "text.db3")


def test_sqlite3_database_without_the_rosbag2_tables_is_a_bag_error(tmp_path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(tmp_path / "other.db3")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.commit()
    con.close()
    with pytest.raises(BagError, match="missing tables"):
        read_bag_info(tmp_path / "other.db3")
    with pytest.raises(BagError, match="without the rosbag2 tables"):
        bag_custom_data(tmp_path / "other.db3")


@pytest.mark.parametrize("change, message", [
    (lambda meta, text: "{{{ not yaml", "is not valid YAML"),
    (lambda meta, text: "", "no rosbag2_bagfile_information"),
    (lambda meta, text: "- a\n- list\n", "no rosbag2_bagfile_information"),
    (lambda meta, text: text.replace("relative_file_paths:\n  - bag.mcap", "relative_file_paths:\n  - other.mcap"),
     "lists the storage file 'other.mcap', which is missing"),
    (lambda meta, text: text.replace("relative_file_paths:\n  - bag.mcap",
                                     "relative_file_paths:\n  - metadata.yaml"), "does not belong to these files"),
    (lambda meta, text: text.replace("relative_file_paths:\n  - bag.mcap",
                                     "relative_file_paths:\n  - bag.mcap\n  - bag.mcap"), "twice"),
    (lambda meta, text: text.replace("storage_identifier: mcap", "storage_identifier: sqlite3"),
     "does not belong to these files"),
    (lambda meta, text: text.replace("storage_identifier: mcap", "storage_identifier: rosbag_v2"),
     "storage_identifier 'rosbag_v2'"),
    (lambda meta, text: text.replace("\n  message_count: 2\n", "\n  message_count: lots\n"),
     "cannot open bag .*ValueError: invalid literal"),
    (lambda meta, text: text.replace("type: sensor_msgs/msg/PointCloud2", "type: [1, 2]"),
     "a topic entry is malformed"),
    (lambda meta, text: text.replace("version: 8", "version: 10"), "Rosbag2 version 10 not supported"),
])
def test_bad_metadata_yaml_is_a_bag_error_naming_it(tmp_path: Path, change, message: str) -> None:
    bag = tmp_path / "bag"
    write_cloud_bag(bag, 2)
    meta = bag / "metadata.yaml"
    text = meta.read_text()
    changed = change(meta, text)
    assert changed != text
    meta.write_text(changed)
    with pytest.raises(BagError, match=message) as raised:
        read_bag_info(bag)
    assert str(bag) in str(raised.value)


def test_directory_without_metadata_and_metadata_folder_are_bag_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no metadata.yaml"):
        read_bag_info(tmp_path / "empty")
    with pytest.raises(BagError, match="no metadata.yaml"):
        bag_custom_data(tmp_path / "empty")
    (tmp_path / "odd" / "metadata.yaml").mkdir(parents=True)
    with pytest.raises(BagError, match="no metadata.yaml"):
        read_bag_info(tmp_path / "odd")


# --------------------------------------------------------------------------------------------------- markers


def plain_rosbags_bag(path: Path, storage: str) -> Path:
    """A bag written by rosbags itself (no gen3d marker) as a directory ``path``."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = get_gen3d_typestore()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        conn = writer.add_connection("/h", "std_msgs/msg/String", typestore=store)
        writer.write(conn, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    return path


@pytest.mark.parametrize("name", ["bag", "bag.mcap", "bag.db3", "sqlbag"])
def test_bags_we_write_carry_the_generator_marker(tmp_path: Path, name: str) -> None:
    from gen3d_ros.outputs import GENERATOR, written_by_gen3d

    out = write_bag(tmp_path / name, three_topic_messages(1), storage="sqlite3" if name == "sqlbag" else None)
    assert bag_custom_data(out) == {"generator": GENERATOR}
    assert written_by_gen3d(out) is True
    if out.is_dir():  # the storage file carries it too (rosbag2 keeps a copy of the metadata inside)
        (storage,) = [p for p in out.iterdir() if p.suffix in (".mcap", ".db3")]
        assert bag_custom_data(storage) == {"generator": GENERATOR}


@pytest.mark.parametrize("storage", STORAGES)
def test_bags_of_plain_rosbags_are_not_ours(tmp_path: Path, storage: str) -> None:
    from gen3d_ros.outputs import written_by_gen3d

    bag = plain_rosbags_bag(tmp_path / "plain", storage)
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    for path in (bag, storage_file):
        assert bag_custom_data(path) == {}
        assert written_by_gen3d(path) is False
        assert read_bag_info(path)["message_count"] == 1  # a valid bag, just not ours


def test_custom_data_of_unreadable_bags_is_a_bag_error(tmp_path: Path) -> None:
    from gen3d_ros.outputs import written_by_gen3d

    (tmp_path / "x.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x01" + (2**40).to_bytes(8, "little"))
    (tmp_path / "x.db3").write_bytes(b"garbage" * 100)
    for name in ("x.mcap", "x.db3"):
        with pytest.raises(BagError, match=str(tmp_path / name)):
            bag_custom_data(tmp_path / name)
        assert written_by_gen3d(tmp_path / name) is False
    with pytest.raises(FileNotFoundError):
        bag_custom_data(tmp_path / "missing.mcap")


def test_force_never_replaces_a_folder_or_bag_gen3d_did_not_write(tmp_path: Path) -> None:
    from gen3d_ros.outputs import OutputError

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    plain = plain_rosbags_bag(tmp_path / "plain", "mcap")
    before = tree_fingerprint(plain)
    for target in (user, plain):
        with pytest.raises(OutputError, match="not written by gen3d_ros") as raised:
            write_bag(target, three_topic_messages(1), force=True)
        assert not isinstance(raised.value, OutputExistsError)
    assert (user / "notes.txt").read_text() == "mine" and tree_fingerprint(plain) == before
    assert leftovers(tmp_path) == []


def test_output_exists_error_is_a_bag_error_and_an_outputs_error(tmp_path: Path) -> None:
    import gen3d_ros.outputs as outputs

    out = write_bag(tmp_path / "b.mcap", three_topic_messages(1))
    with pytest.raises(OutputExistsError, match=r"output bag .*b.mcap exists; pass --force") as raised:
        write_bag(out, three_topic_messages(1))
    assert isinstance(raised.value, BagError) and isinstance(raised.value, outputs.OutputExistsError)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, FileExistsError)


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    from gen3d_ros import outputs

    stale = tmp_path / ".bag.gen3d-tmp-999999999-abcd1234"  # pid 999999999 does not run
    (stale / "bag").mkdir(parents=True)
    assert outputs.temporary_sibling(tmp_path / "bag", keep_suffix=False).name.startswith(".bag.gen3d-tmp-")
    write_bag(tmp_path / "bag", three_topic_messages(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_read_bag_info_reports_the_offered_qos_as_json(tmp_path: Path) -> None:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    qos = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, QosTime(1, 500),
              QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    for name in ("bag", "b.mcap", "b.db3"):
        with BagWriter(tmp_path / name) as out:
            out.add_topic("/h", "std_msgs/msg/Header", qos=[qos])
            out.write("/h", header(rosbags_factory(), 3), 3)
        info = read_bag_info(tmp_path / name)
        assert info["topics"]["/h"]["qos"] == [{
            "history": "keep_last", "depth": 5, "reliability": "best_effort", "durability": "volatile",
            "deadline": {"sec": 1, "nsec": 500}, "lifespan": {"sec": 0, "nsec": 0}, "liveliness": "automatic",
            "liveliness_lease_duration": {"sec": 0, "nsec": 0}, "avoid_ros_namespace_conventions": False}], name
        assert json.loads(json.dumps(info)) == info
