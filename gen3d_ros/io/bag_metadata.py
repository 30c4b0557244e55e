"""The ``custom_data`` of a rosbag2 bag, read from ``metadata.yaml`` or from the copy of the metadata that
rosbag2 stores inside a single ``.mcap`` / ``.db3`` file, without opening the bag's messages.

gen3d_ros marks every bag it writes there (``generator: gen3d_ros <version>``); :mod:`gen3d_ros.io.bag_writer`
reads the mark back through :func:`bag_custom_data` to recognise its own outputs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gen3d_ros.io.bag_storage import (MAX_METADATA_BYTES, MCAP_MAGIC, OP_DATA_END, OP_METADATA, BagError,
                                      BoundedFile, describe_failure, load_yaml, read_metadata, storage_of)


def bag_custom_data(path: str | os.PathLike) -> dict[str, str]:
    """The rosbag2 ``custom_data`` of a bag directory, ``.mcap`` or ``.db3`` file (``{}`` when it has none).

    A directory's comes from ``metadata.yaml``; a single file's from the metadata rosbag2 stores inside it (the
    ``rosbag2`` metadata record of an mcap, the ``metadata`` table of a sqlite3 database). Raises
    ``FileNotFoundError`` for a missing path and :class:`BagError` for anything that is not a readable bag.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag {str(path)!r} does not exist")
    try:
        if path.is_dir():
            info: Any = read_metadata(path)
        elif storage_of(path) == "mcap":
            info = _mcap_stored_metadata(path)
        else:
            info = _db3_stored_metadata(path)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable in any way: one clear error
        raise BagError(f"cannot read the metadata of bag {path}: {describe_failure(exc)}") from exc
    custom = info.get("custom_data") if isinstance(info, dict) else None
    if custom is None:
        return {}
    if not isinstance(custom, dict):
        raise BagError(f"bag {path}: custom_data is a {type(custom).__name__}, not a mapping of strings")
    return {str(key): str(value) for key, value in custom.items()}


def _yaml_mapping(text: str | bytes, where: str) -> dict:
    import yaml

    try:
        data = load_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise BagError(f"{where}: the stored metadata is not valid YAML: {' '.join(str(exc).split())[:200]}") \
            from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BagError(f"{where}: the stored metadata is a {type(data).__name__}, not a mapping")
    return data.get("rosbag2_bagfile_information", data)


def _mcap_stored_metadata(path: Path) -> dict:
    """The ``serialized_metadata`` of the ``rosbag2`` metadata record of an mcap file (``{}`` when absent),
    found by walking the top-level records of the data section (chunks are skipped, not read)."""
    with BoundedFile(path) as bio:
        size = bio.size
        if bio.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise BagError(f"{path} is not an mcap file (wrong magic bytes)")
        while bio.tell() < size:
            at = bio.tell()
            head = bio.read(9)
            if len(head) < 9:
                raise BagError(f"{path}: record header cut short at byte {at}: the file is truncated")
            op, length = head[0], int.from_bytes(head[1:], "little")
            if length > size - at - 9:
                raise BagError(f"{path}: record at byte {at} claims {length} bytes, only {size - at - 9} follow: "
                               "the file is truncated or the length is corrupt")
            if op in (OP_DATA_END, 0x02):  # end of the data section / footer: no rosbag2 metadata record
                return {}
            if op != OP_METADATA:
                bio.seek(at + 9 + length)
                continue
            if length > MAX_METADATA_BYTES:
                raise BagError(f"{path}: metadata record at byte {at} is {length} bytes, too large to be rosbag2's")
            record = bio.read(length)
            name, pairs = _mcap_metadata_record(record, f"{path}: metadata record at byte {at}")
            if name == "rosbag2":
                return _yaml_mapping(pairs.get("serialized_metadata", ""), f"{path}")
        raise BagError(f"{path}: the file ends at byte {size} without a data end record: it is truncated")


def _mcap_metadata_record(record: bytes, where: str) -> tuple[str, dict[str, str]]:
    """``(name, {key: value})`` of an mcap metadata record body."""
    def text(pos: int) -> tuple[str, int]:
        if pos + 4 > len(record):
            raise BagError(f"{where} is cut short")
        n = int.from_bytes(record[pos:pos + 4], "little")
        if pos + 4 + n > len(record):
            raise BagError(f"{where}: a string of {n} bytes overruns the record")
        return record[pos + 4:pos + 4 + n].decode("utf-8", "replace"), pos + 4 + n

    name, pos = text(0)
    if pos + 4 > len(record):
        raise BagError(f"{where} is cut short")
    end = pos + 4 + int.from_bytes(record[pos:pos + 4], "little")
    if end > len(record):
        raise BagError(f"{where}: its key/value map overruns the record")
    pairs, pos = {}, pos + 4
    while pos < end:
        key, pos = text(pos)
        value, pos = text(pos)
        pairs[key] = value
    return name, pairs


def _db3_stored_metadata(path: Path) -> dict:
    """The metadata rosbag2 (schema 4+) stores in the ``metadata`` table of a ``.db3`` (``{}`` without one)."""
    if path.stat().st_size == 0:
        raise BagError(f"{path} is empty (0 bytes), not a rosbag2 sqlite3 database")
    uri = f"file:{quote(str(path.resolve()))}?immutable=1"  # immutable: never create -wal / -shm files
    try:
        con = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise BagError(f"cannot open {path} as an SQLite database: {exc}") from exc
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"messages", "topics"} <= tables:
            raise BagError(f"{path} is an SQLite database without the rosbag2 tables messages and topics")
        if "metadata" not in tables:
            return {}
        row = con.execute("SELECT metadata FROM metadata ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        raise BagError(f"{path} is not a readable SQLite database: {exc}") from exc
    finally:
        con.close()
    if row is None or row[0] is None:
        return {}
    if not isinstance(row[0], (str, bytes)) or len(row[0]) > MAX_METADATA_BYTES:
        raise BagError(f"{path}: the metadata row is not text of a sane size")
    return _yaml_mapping(row[0], str(path))
