"""Property-based fuzzing of the rosbag2 reader: malformed bags fail with one clear BagError, never a traceback.

Small valid bags (mcap and sqlite3; PointCloud2, Image and std_msgs messages) are written once per module with
``BagWriter``; hypothesis then mutates their bytes (bit flips, overwrites of record opcodes, lengths, channel
ids and chunk fields with boundary values, truncations, appended garbage) and their ``metadata.yaml`` (keys
removed or retyped, files that are not there, garbage text), and every case is opened and read to the last
decoded message through :func:`gen3d_ros.io.rosbag2.read_bag_info`, :class:`~gen3d_ros.io.rosbag2.BagReader`
and :func:`~gen3d_ros.io.rosbag2.bag_custom_data` inside :func:`harness.expect_clean_failure`.

mcap mutations run twice: on the bag as written (chunk, data and summary CRCs set, so most payload damage is
caught by a CRC) and on a copy with every CRC zeroed ("not computed", what other writers produce), so that the
damage reaches rosbags' record parsing and our own chunk reader.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen3d_ros.io.messages import rosbags_factory
from gen3d_ros.io.pointcloud2 import arrays_to_pointcloud2
from gen3d_ros.io.rosbag2 import BagError, BagReader, BagWriter, bag_custom_data, read_bag_info
from gen3d_ros.outputs import written_by_gen3d

from .harness import examples, expect_clean_failure

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
T0 = 1_700_000_000_000_000_000
N_MESSAGES = 9
#: Values written over length / id / size fields: zero, off-by-one around a message header, and huge ones.
BOUNDARY = [0, 1, 8, 21, 22, 23, 255, 2**16 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1]


# ------------------------------------------------------------------------------------------------ the bags


def _messages() -> list[tuple[str, object, int]]:
    f = rosbags_factory()
    rng = np.random.default_rng(7)
    out = []
    for i in range(3):
        t = T0 + i * 100_000_000
        stamp = f.time(sec=t // 10**9, nanosec=t % 10**9)
        points = rng.uniform(-5, 5, (40, 3)).astype(np.float32)
        out.append(("/points", arrays_to_pointcloud2(points, f, frame_id="lidar", stamp=stamp,
                                                     fields={"intensity": np.ones(40, np.float32)}), t))
        header = f.new("std_msgs/msg/Header", frame_id="cam", stamp=stamp)
        pixels = rng.integers(0, 255, 4 * 6 * 3, dtype=np.uint8)
        out.append(("/image", f.new("sensor_msgs/msg/Image", header=header, height=4, width=6, encoding="rgb8",
                                    step=18, data=pixels), t + 1))
        out.append(("/note", f.new("std_msgs/msg/String", data=f"sweep {i}"), t + 2))
    return out


def _write(path: Path) -> Path:
    with BagWriter(path) as out:
        for topic, msg, t in _messages():
            out.write(topic, msg, t)
    return path


def _u64(data: bytes | bytearray, at: int) -> int:
    return int.from_bytes(data[at:at + 8], "little")


def mcap_layout(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """``{kind: [(offset, width), ...]}`` of the structural fields of an mcap file, found independently of the
    reader under test: record opcodes and lengths (top level and inside chunks), message channel ids, chunk
    size/CRC fields, CRC fields and the footer's summary offset."""
    fields: dict[str, list[tuple[int, int]]] = {"opcode": [], "length": [], "channel": [], "chunk": [], "crc": []}
    pos = 8
    while pos + 9 <= len(data) - 8:
        op, length = data[pos], _u64(data, pos + 1)
        fields["opcode"].append((pos, 1))
        fields["length"].append((pos + 1, 8))
        body = pos + 9
        if op == 0x06:  # chunk: start, end, uncompressed size, crc, compression, compressed size, records
            fields["chunk"] += [(body + 16, 8), (body + 28, 4)]
            fields["crc"].append((body + 24, 4))
            name_len = int.from_bytes(data[body + 28:body + 32], "little")
            fields["chunk"].append((body + 32 + name_len, 8))
            inner, end = body + 32 + name_len + 8, body + length
            while inner + 9 <= end:
                fields["opcode"].append((inner, 1))
                fields["length"].append((inner + 1, 8))
                if data[inner] == 0x05:
                    fields["channel"].append((inner + 9, 2))
                inner += 9 + _u64(data, inner + 1)
        elif op == 0x0F:
            fields["crc"].append((body, 4))
        elif op == 0x02:
            fields["chunk"].append((body, 8))  # summary_start
            fields["crc"].append((body + 16, 4))
            break
        pos = body + length
    return fields


def without_crcs(data: bytes) -> bytes:
    """The mcap with every CRC field zeroed: valid, but nothing is checked (what rosbags itself writes)."""
    out = bytearray(data)
    for at, width in mcap_layout(data)["crc"]:
        out[at:at + width] = bytes(width)
    return bytes(out)


def without_summary(data: bytes) -> bytes:
    """The mcap with the footer's summary offset zeroed: readers must scan the data section (unindexed)."""
    out = bytearray(without_crcs(data))
    footer = len(out) - 8 - 29
    out[footer + 9:footer + 17] = bytes(8)
    return bytes(out)


class Bags:
    """The module's pristine bags (bytes) and a work folder the cases are written into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        mcap = _write(root / "small.mcap")
        db3 = _write(root / "small.db3")
        self.dir = _write(root / "dirbag")
        self.dir_storage = next(self.dir.glob("*.mcap")).name
        self.mcap = mcap.read_bytes()
        self.db3 = db3.read_bytes()
        self.metadata = yaml.safe_load((self.dir / "metadata.yaml").read_text())
        self.variants = {"crc": self.mcap, "nocrc": without_crcs(self.mcap), "unindexed": without_summary(self.mcap)}
        self.layout = {name: mcap_layout(data) for name, data in self.variants.items()}

    def case_file(self, data: bytes, suffix: str) -> Path:
        path = self.work / f"case{suffix}"
        path.write_bytes(data)
        return path

    def case_dir(self, metadata_text: bytes | None = None, storage: bytes | None = None) -> Path:
        path = self.work / "dircase"
        if not path.exists():
            shutil.copytree(self.dir, path)
        (path / "metadata.yaml").write_bytes(metadata_text if metadata_text is not None
                                             else (self.dir / "metadata.yaml").read_bytes())
        (path / self.dir_storage).write_bytes(storage if storage is not None else self.mcap)
        for extra in set(p.name for p in path.iterdir()) - {"metadata.yaml", self.dir_storage}:
            (path / extra).unlink()
        return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Bags:
    return Bags(tmp_path_factory.mktemp("fuzz_bags"))


def read_everything(path: Path) -> int:
    """What a consumer does: summary, then every message decoded; the number of messages read."""
    info = read_bag_info(path)
    assert isinstance(info["message_count"], int) and info["skipped_records"] >= 0
    with BagReader(path) as bag:
        count = sum(1 for m in bag.messages() if m.msg is not None)
        assert bag.skipped_records >= 0
    return count


def check_case(target: str, path: Path) -> object:
    """Read ``path`` completely, and its custom data; only BagError may come out, and ``written_by_gen3d``
    (which reads the same data to decide whether --force may replace it) never raises."""
    result = expect_clean_failure(target, read_everything, path, allowed=(BagError,))
    expect_clean_failure(f"{target}/custom_data", bag_custom_data, path, allowed=(BagError,))
    assert written_by_gen3d(path) in (True, False)
    return result


def test_pristine_bags_read_completely(bags: Bags) -> None:
    for suffix, data in ((".mcap", bags.mcap), (".db3", bags.db3)):
        assert read_everything(bags.case_file(data, suffix)) == N_MESSAGES
    for name, data in bags.variants.items():
        assert read_everything(bags.case_file(data, ".mcap")) == N_MESSAGES, name
    assert read_everything(bags.case_dir()) == N_MESSAGES
    assert bags.layout["crc"]["channel"] and len(bags.layout["crc"]["crc"]) == 3


# ------------------------------------------------------------------------------------------------ mutations


@st.composite
def byte_mutation(draw: st.DrawFn, size: int) -> tuple[str, int, bytes]:
    """``(kind, offset, payload)``: flip one bit, overwrite 1-8 random bytes, truncate, or append garbage."""
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "append"]))
    if kind == "flip":
        return kind, draw(st.integers(0, size - 1)), bytes([1 << draw(st.integers(0, 7))])
    if kind == "overwrite":
        return kind, draw(st.integers(0, size - 1)), draw(st.binary(min_size=1, max_size=8))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1)), b""
    return kind, size, draw(st.binary(min_size=1, max_size=64))


def apply(data: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, at, payload = mutation
    if kind == "flip":
        out = bytearray(data)
        out[at] ^= payload[0]
        return bytes(out)
    if kind == "overwrite":
        return data[:at] + payload + data[at + len(payload):]
    if kind == "truncate":
        return data[:at]
    return data + payload


def overwrite_field(data: bytes, at: int, width: int, value: int) -> bytes:
    return data[:at] + (value % 256**width).to_bytes(width, "little") + data[at + width:]


@settings(max_examples=examples(800), **SETTINGS)
@given(variant=st.sampled_from(["crc", "nocrc", "unindexed"]), data=st.data())
def test_mcap_byte_mutations_fail_cleanly(bags: Bags, variant: str, data: st.DataObject) -> None:
    pristine = bags.variants[variant]
    mutated = apply(pristine, data.draw(byte_mutation(len(pristine))))
    check_case(f"mcap/{variant}/bytes", bags.case_file(mutated, ".mcap"))


@settings(max_examples=examples(700), **SETTINGS)
@given(variant=st.sampled_from(["crc", "nocrc", "unindexed"]),
       kind=st.sampled_from(["opcode", "length", "channel", "chunk", "crc"]), data=st.data())
def test_mcap_structural_fields_fail_cleanly(bags: Bags, variant: str, kind: str, data: st.DataObject) -> None:
    """Record opcodes, lengths (the "huge record length" case), channel ids and chunk sizes set to boundary or
    random values."""
    pristine = bags.variants[variant]
    at, width = data.draw(st.sampled_from(bags.layout[variant][kind]))
    value = data.draw(st.one_of(st.sampled_from(BOUNDARY), st.integers(0, 256**width - 1)))
    check_case(f"mcap/{variant}/{kind}", bags.case_file(overwrite_field(pristine, at, width, value), ".mcap"))


@settings(max_examples=examples(200), **SETTINGS)
@given(data=st.data())
def test_a_flipped_bit_in_a_checksummed_chunk_is_always_reported(bags: Bags, data: st.DataObject) -> None:
    """Payload damage in a bag we wrote is never decoded into wrong values: any bit flipped inside a chunk's
    records makes reading fail, naming the bag and the CRC."""
    chunk_at = next(at for at, width in bags.layout["crc"]["opcode"] if bags.mcap[at] == 0x06)
    first = chunk_at + 9 + 32 + int.from_bytes(bags.mcap[chunk_at + 9 + 28:chunk_at + 9 + 32], "little") + 8
    last = chunk_at + 9 + _u64(bags.mcap, chunk_at + 1) - 1
    at = data.draw(st.integers(first, last))
    path = bags.case_file(apply(bags.mcap, ("flip", at, bytes([1 << data.draw(st.integers(0, 7))]))), ".mcap")
    outcome = expect_clean_failure("mcap/crc/payload", read_everything, path, allowed=(BagError,))
    assert isinstance(outcome, BagError), f"flip at byte {at} was not detected"
    assert str(path) in str(outcome) and "CRC" in str(outcome)


@settings(max_examples=examples(400), **SETTINGS)
@given(data=st.data())
def test_sqlite3_byte_mutations_fail_cleanly(bags: Bags, data: st.DataObject) -> None:
    mutated = apply(bags.db3, data.draw(byte_mutation(len(bags.db3))))
    check_case("sqlite3/bytes", bags.case_file(mutated, ".db3"))


# ------------------------------------------------------------------------------------------------ metadata.yaml


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict/list document."""
    out = []
    if isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, list):
        items = list(enumerate(tree))
    else:
        return out
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=20), st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([["../../etc/passwd"], ["metadata.yaml"], ["missing.mcap"], ["dirbag.db3"], [],
                     ["dirbag.mcap", "dirbag.mcap"], "dirbag.mcap", "sqlite3", "mcap", "rosbags"]),
)


@settings(max_examples=examples(120), **SETTINGS)
@given(data=st.data())
def test_metadata_yaml_corruption_fails_cleanly(bags: Bags, data: st.DataObject) -> None:
    """Keys removed or given odd values (other types, files that are not there or not storage files), the
    text flipped or truncated, or garbage instead of YAML."""
    kind = data.draw(st.sampled_from(["retype", "delete", "text-bytes", "garbage"]))
    doc = yaml.safe_load(yaml.safe_dump(bags.metadata))
    if kind in ("retype", "delete"):
        path = data.draw(st.sampled_from(_paths(doc)))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(ODD_VALUES)
        text = yaml.safe_dump(doc).encode()
    elif kind == "text-bytes":
        pristine = (bags.dir / "metadata.yaml").read_bytes()
        text = apply(pristine, data.draw(byte_mutation(len(pristine))))
    else:
        text = data.draw(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
    check_case(f"metadata/{kind}", bags.case_dir(metadata_text=text))


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_directory_bag_with_a_damaged_storage_file_fails_cleanly(bags: Bags, data: st.DataObject) -> None:
    mutated = apply(bags.variants["nocrc"], data.draw(byte_mutation(len(bags.mcap))))
    check_case("dir/storage", bags.case_dir(storage=mutated))


# ------------------------------------------------------------------------------------------------ fixed cases


@pytest.mark.parametrize("suffix", [".mcap", ".db3"])
def test_zero_byte_and_garbage_files_are_bag_errors_naming_the_file(bags: Bags, suffix: str) -> None:
    for content in (b"", b"\x00" * 4096, b"\x89MCAP0\r\n" + b"\xff" * 100, b"SQLite format 3\x00" + bytes(200)):
        path = bags.case_file(content, suffix)
        with pytest.raises(BagError, match=str(path)):
            read_everything(path)
        with pytest.raises(BagError):
            bag_custom_data(path)
        assert written_by_gen3d(path) is False
