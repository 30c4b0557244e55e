"""rosbag2 read and write with rosbags: mcap and sqlite3, no ROS install needed.

Reading (:class:`BagReader`) takes a rosbag2 directory (``metadata.yaml`` + storage files) or a single
``.mcap`` / ``.db3`` file, opens it read-only, and yields messages in log-time order across topics. Messages are
deserialised with the gen3d typestore (ROS 2 Jazzy + ``gen3d_ros/msg``); a type the store does not know, or one
whose definition in the bag hashes differently (a bag of another distro), is decoded with the definition stored
in the bag.

A bag that cannot be read, whatever is wrong with it (a zero-byte or truncated file, a corrupt length field, a
chunk whose CRC does not match, a ``metadata.yaml`` that is not YAML or names files that are not there, a
``.db3`` that is not an SQLite database), raises :class:`BagError` naming the bag, the storage file, what is wrong
and, when known, the byte offset: never a raw ``rosbags`` / ``struct`` / ``sqlite`` exception. Message records
whose channel (topic) id the bag never declares are skipped, counted (:attr:`BagReader.skipped_records`,
``read_bag_info(...)["skipped_records"]``) and reported in one warning.

Writing is :mod:`gen3d_ros.io.bag_writer` (:class:`BagWriter`, :func:`write_bag`, re-exported here): topics carry
the message definition and RIHS01 hash rclpy computes, mcap files real CRC-32s, every bag the gen3d_ros
``custom_data`` marker (:func:`bag_custom_data`, :mod:`gen3d_ros.io.bag_metadata`), and the output is written
atomically through :mod:`gen3d_ros.outputs`. The hardened storage readers are :mod:`gen3d_ros.io.bag_storage`.

    with BagReader("drive/") as bag:
        for m in bag.messages(["/points"]):
            cloud = m.msg                       # rosbags dataclass of sensor_msgs/msg/PointCloud2
    with BagWriter("out/", storage="mcap") as out:
        out.write("/completion_node/mesh", msg, time_ns)

Output forms: a path ending in ``.mcap`` (``.db3``) becomes a single mcap (sqlite3) file; any other path a
rosbag2 directory.
"""

from __future__ import annotations

import copy
import enum
import heapq
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gen3d_ros.io.bag_metadata import bag_custom_data
from gen3d_ros.io.bag_storage import (MAX_METADATA_BYTES, STORAGES, BagError, StorageReader, describe_failure,
                                      storage_of)
from gen3d_ros.io.bag_writer import BAG_VERSION, BagWriter, OutputExistsError, output_form, write_bag
from gen3d_ros.io.typestore import get_gen3d_typestore

__all__ = ["BAG_VERSION", "MAX_METADATA_BYTES", "STORAGES", "BagError", "BagMessage", "BagReader", "BagWriter",
           "OutputExistsError", "TopicInfo", "bag_custom_data", "output_form", "read_bag_info", "read_messages",
           "types_from_definition", "write_bag"]

log = logging.getLogger("gen3d_ros.io.rosbag2")


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: ``name``, ``msgtype`` (``pkg/msg/Name``), message ``count``, RIHS01 ``digest``
    (empty when the bag stores none), ``msgdef`` text, ``qos`` (rosbags ``Qos`` profiles as recorded) and the
    ``serialization`` format of its messages (``cdr``)."""

    name: str
    msgtype: str
    count: int
    digest: str = ""
    msgdef: str = ""
    msgdef_format: str = "ros2msg"
    qos: tuple = ()
    serialization: str = "cdr"


@dataclass
class BagMessage:
    """One message: ``topic``, ``msgtype``, ``log_time_ns`` (receive time recorded in the bag), serialised CDR
    ``raw`` bytes and, when decoded, ``msg`` (a rosbags dataclass)."""

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes
    msg: Any = None


def types_from_definition(msgtype: str, fmt: MessageDefinitionFormat, text: str) -> dict:
    """Parse a definition stored in a bag (msg with ``MSG:`` sub-definitions, or IDL) into a rosbags types dict."""
    if fmt == MessageDefinitionFormat.MSG:
        return get_types_from_msg(text, msgtype)
    types: dict = {}
    sep = "=" * 80 + "\n"
    if text.startswith(f"{sep}IDL: "):
        for part in text.split(sep)[1:]:
            types.update(get_types_from_idl(part.split("\n", 1)[1]))
    else:
        types.update(get_types_from_idl(text))
    return types


def _qos_json(qos: Any) -> dict[str, Any]:
    """A rosbags ``Qos`` profile as plain JSON data (enums by lower-case name, durations as ``{sec, nsec}``)."""
    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.name.lower()
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return {k: plain(v) for k, v in zip(value._fields, value)}
        if isinstance(value, (bool, int, float, str)) or value is None:
            return value
        return str(value)

    return plain(qos) if hasattr(qos, "_fields") else {"profile": str(qos)}


class BagReader:
    """Read-only access to a rosbag2 bag (directory, ``.mcap`` or ``.db3``); use as a context manager.

    Attributes after opening: ``path``, ``storage`` (``"mcap"`` / ``"sqlite3"``), ``topics`` (name ->
    :class:`TopicInfo`), ``message_count``, ``start_ns``/``end_ns`` (first/last log time), ``duration_s``,
    ``skipped_records``.

    Raises: ``FileNotFoundError`` (no such path) from the constructor; :class:`BagError` for anything else that
    makes the bag unreadable, from the constructor, :meth:`open` or while iterating :meth:`messages`.
    """

    def __init__(self, path: str | os.PathLike, *, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {str(self.path)!r} does not exist")
        self.storage = storage_of(self.path)
        self.typestore = typestore if typestore is not None else get_gen3d_typestore()
        self._reader: Reader | None = None
        self._decoders: dict[str, Typestore | None] = {}  # msgtype -> store that decodes it
        self._counts = (0, 0, 0)  # message count, start, end (ns)
        self._unmatched = 0  # records of storage-file topics that metadata.yaml does not list
        self._skipped_closed = 0
        self._warned = False
        self.topics: dict[str, TopicInfo] = {}

    def _failure(self, doing: str, exc: BaseException) -> BagError:
        return BagError(f"cannot {doing} bag {self.path}: {describe_failure(exc)}; the bag is damaged or not a rosbag2 "
                        "bag (re-record or repair it, e.g. `ros2 bag reindex` / `mcap recover`)")

    # context management
    def open(self) -> "BagReader":
        """Open the bag and read its index (topics, counts, times); :class:`BagError` when it is unreadable."""
        if self._reader is not None:
            return self
        try:
            reader = StorageReader(self.path)
            reader.open()
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the bytes made rosbags raise: one clear error
            raise self._failure("open", exc) from exc
        self._reader = reader
        try:
            self._index(reader)
        except BaseException as exc:
            self.close()
            if isinstance(exc, BagError) or not isinstance(exc, Exception):
                raise
            raise self._failure("open", exc) from exc
        return self

    def _index(self, reader: Reader) -> None:
        """Topics, counts, times and decoders of the just opened ``reader`` (inside open's error handling)."""
        topics: dict[str, TopicInfo] = {}
        for conn in reader.connections:
            if not isinstance(conn.topic, str) or not isinstance(conn.msgtype, str) \
                    or not isinstance(conn.msgcount, int):
                raise BagError(f"bag {self.path}: a topic entry is malformed (name {conn.topic!r:.80}, type "
                               f"{conn.msgtype!r:.80}, count {conn.msgcount!r:.40}); the metadata is corrupt")
            qos = tuple(conn.ext.offered_qos_profiles) if isinstance(conn.ext, ConnectionExtRosbag2) else ()
            fmt = {MessageDefinitionFormat.IDL: "ros2idl"}.get(conn.msgdef.format, "ros2msg")
            prev = topics.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            digest = conn.digest if isinstance(conn.digest, str) else ""
            serialization = (str(conn.ext.serialization_format) if isinstance(conn.ext, ConnectionExtRosbag2)
                             else "cdr")
            topics[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count, digest, conn.msgdef.data, fmt, qos,
                                           serialization)
        self.topics = dict(sorted(topics.items()))
        count = int(reader.message_count)
        self._counts = (count, int(reader.start_time) if count else 0, int(reader.end_time) - 1 if count else 0)
        self._unmatched = self._unmatched_records(reader)
        self._decoders = {}
        for conn in reader.connections:
            if conn.msgtype not in self._decoders:
                self._decoders[conn.msgtype] = self._decoder_for(conn)

    @staticmethod
    def _unmatched_records(reader: Reader) -> int:
        """Messages of a directory bag's storage files on topics that ``metadata.yaml`` does not list (rosbags
        matches them by topic, type and QoS and skips the rest without a word)."""
        storage = reader.storage
        if not isinstance(storage, DirectoryReader):
            return 0
        listed = {(c.topic, c.msgtype) for c in storage.connections}
        return sum(c.msgcount for s in storage.storages for c in s.connections
                   if (c.topic, c.msgtype) not in listed and isinstance(c.msgcount, int))

    @property
    def skipped_records(self) -> int:
        """Message records skipped because the bag does not declare their channel (topic) id: counted from the
        index when the bag is opened, exactly for every chunk :meth:`messages` has read."""
        if self._reader is None:
            return self._skipped_closed
        return int(getattr(self._reader.storage, "skipped_records", 0)) + self._unmatched

    def close(self) -> None:
        """Close the bag; warns once (with the count) when records of undeclared channels were skipped."""
        reader = self._reader
        if reader is None:
            return
        self._skipped_closed = self.skipped_records
        self._reader = None
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - a storage that failed to open may not close cleanly
            log.debug("closing %s failed", self.path, exc_info=True)
        if self._skipped_closed and not self._warned:
            self._warned = True
            log.warning("bag %s: skipped %d message record(s) whose channel/topic id the bag does not declare "
                        "(a corrupt or incompletely written bag)", self.path, self._skipped_closed)

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _open_reader(self) -> Reader:
        if self._reader is None:
            raise BagError(f"bag {self.path} is not open; use `with BagReader(path) as bag:`")
        return self._reader

    @property
    def message_count(self) -> int:
        self._open_reader
        return self._counts[0]

    @property
    def start_ns(self) -> int:
        self._open_reader
        return self._counts[1]

    @property
    def end_ns(self) -> int:
        # rosbags reports end_time one past the last message
        self._open_reader
        return self._counts[2]

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9 if self.message_count else 0.0

    def topics_of_type(self, msgtype: str) -> list[str]:
        """Names of the topics carrying ``msgtype`` (``"sensor_msgs/msg/PointCloud2"``)."""
        return [name for name, info in self.topics.items() if info.msgtype == msgtype]

    # decoding
    def _decoder_for(self, conn: Connection) -> Typestore | None:
        """The typestore that decodes ``conn``'s type: ours when it knows the type with the same hash, else one
        built from the definition stored in the bag; ``None`` when neither is possible."""
        known = conn.msgtype in self.typestore.types
        digest = conn.digest if isinstance(conn.digest, str) else ""
        if known and (not digest.startswith("RIHS01_") or self.typestore.hash_rihs01(conn.msgtype) == digest):
            return self.typestore
        if conn.msgdef.format != MessageDefinitionFormat.NONE and conn.msgdef.data:
            try:
                store = get_typestore(Stores.EMPTY)
                store.register(types_from_definition(conn.msgtype, conn.msgdef.format, conn.msgdef.data))
            except Exception as exc:  # noqa: BLE001 - a bad definition only disables that topic
                log.warning("bag %s: cannot parse the stored definition of %s: %s", self.path, conn.msgtype, exc)
            else:
                if known:
                    log.info("bag %s: %s differs from the Jazzy definition (hash %s); decoding with the "
                             "definition stored in the bag", self.path, conn.msgtype, digest)
                return store
        if known:
            log.warning("bag %s: %s hash %s differs from ours and the bag stores no definition; decoding with "
                        "the Jazzy definition", self.path, conn.msgtype, digest)
            return self.typestore
        return None

    def can_decode(self, msgtype: str) -> bool:
        """Whether messages of ``msgtype`` in this bag can be deserialised."""
        return self._decoders.get(msgtype) is not None

    def decode(self, message: BagMessage) -> Any:
        """Deserialise ``message.raw``; sets and returns ``message.msg``. Raises :class:`BagError` when the type
        is unknown or the bytes do not parse as that type."""
        store = self._decoders.get(message.msgtype)
        if store is None:
            raise BagError(f"bag {self.path}: cannot decode {message.msgtype} on {message.topic}: the type is not in "
                           "the Jazzy/gen3d typestore and the bag stores no definition for it")
        try:
            message.msg = store.deserialize_cdr(message.raw, message.msgtype)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for corrupt bytes
            raise BagError(f"bag {self.path}: {message.msgtype} message on {message.topic} at "
                           f"{message.log_time_ns} ns does not deserialise: {type(exc).__name__}: {exc}") from exc
        return message.msg

    # iteration
    def messages(self, topics: Iterable[str] | None = None, *, decode: bool = True,
                 start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when ``None``) in log-time order, ``start_ns <= t < stop_ns``.

        With ``decode=True`` each message's ``msg`` is set (a :class:`BagError` is raised for one that cannot be
        decoded); with ``decode=False`` only ``raw`` is, and :meth:`decode` decodes on demand. Any failure to read
        the storage (a chunk failing its CRC, a truncated record) is a :class:`BagError` naming the bag.
        """
        reader = self._open_reader
        wanted = None if topics is None else set(topics)
        if wanted is not None:
            missing = wanted - set(self.topics)
            if missing:
                raise BagError(f"bag {self.path} has no topic(s) {sorted(missing)}; topics: {sorted(self.topics)}")
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        stream = self._ordered(reader, conns, start_ns, stop_ns)
        while True:
            try:
                conn, timestamp, raw = next(stream)
                message = BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(raw))
            except StopIteration:
                return
            except BagError:
                raise
            except Exception as exc:  # noqa: BLE001 - see _failure
                raise self._failure("read messages of", exc) from exc
            if decode:
                self.decode(message)
            yield message

    @staticmethod
    def _ordered(reader: Reader, conns: Sequence[Connection], start: int | None,
                 stop: int | None) -> Iterator[tuple[Connection, int, bytes]]:
        """Each storage file yields in time order already; a split bag's files are merged by time."""
        storage = reader.storage
        files = getattr(storage, "storages", None)
        if files is None or len(files) <= 1:
            yield from reader.messages(conns, start, stop)
            return
        streams = []
        for one in files:  # a shallow copy of the directory reader that sees only one file
            view = copy.copy(storage)
            view.storages = [one]
            streams.append(view.messages(conns, start, stop))
        yield from heapq.merge(*streams, key=lambda item: item[1])


def read_bag_info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a bag as plain (JSON-ready) data: path, storage, ``size_bytes`` (its files), message count,
    times, ``skipped_records`` (records of undeclared channels, from the index) and per topic its type, count,
    serialization format, RIHS01 hash and the QoS profiles recorded for it. Raises like :class:`BagReader`."""
    with BagReader(path) as bag:
        root = Path(bag.path)
        files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else [root]
        return {
            "path": str(bag.path), "storage": bag.storage, "size_bytes": sum(p.stat().st_size for p in files),
            "message_count": bag.message_count,
            "start_ns": bag.start_ns, "end_ns": bag.end_ns, "duration_s": bag.duration_s,
            "skipped_records": bag.skipped_records,
            "topics": {name: {"type": t.msgtype, "count": t.count, "serialization_format": t.serialization,
                              "type_hash": t.digest, "qos": [_qos_json(q) for q in t.qos]}
                       for name, t in bag.topics.items()},
        }


def read_messages(path: str | os.PathLike, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Decoded messages of ``topics`` of the bag at ``path`` in log-time order (opens and closes the bag)."""
    with BagReader(path) as bag:
        yield from bag.messages(topics)
