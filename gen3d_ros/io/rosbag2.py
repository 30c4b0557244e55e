"""rosbag2 read and write with rosbags: mcap and sqlite3, no ROS install needed.

Reading (:class:`BagReader`) takes a rosbag2 directory (``metadata.yaml`` + storage files) or a single
``.mcap`` / ``.db3`` file, opens it read-only, and yields messages in log-time order across topics. Messages are
deserialised with the gen3d typestore (ROS 2 Jazzy + ``gen3d_ros/msg``); a type the store does not know, or one
whose definition in the bag hashes differently (a bag of another distro), is decoded with the definition stored
in the bag.

Writing (:class:`BagWriter`) serialises with the gen3d typestore, so every topic carries the message definition
and the RIHS01 type hash that rclpy computes, and rviz2 / Foxglove / ``ros2 bag play`` replay it. Writing is
atomic: the bag is written into a hidden temporary sibling of the output and renamed into place on success; on
any error the temporary is removed and the output path is left as it was. An existing output is replaced
only with ``force=True``.

    with BagReader("drive/") as bag:
        for m in bag.messages(["/points"]):
            cloud = m.msg                       # rosbags dataclass of sensor_msgs/msg/PointCloud2
    with BagWriter("out/", storage="mcap") as out:
        out.write("/gen3d/completion/mesh", msg, time_ns)

Output forms: a path ending in ``.mcap`` (``.db3``) becomes a single mcap (sqlite3) file; any other path a
rosbag2 directory.
"""

from __future__ import annotations

import copy
import heapq
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gen3d_ros.io.messages import msgtype_of
from gen3d_ros.io.typestore import get_gen3d_typestore

log = logging.getLogger("gen3d_ros.io.rosbag2")

STORAGES = ("mcap", "sqlite3")
#: rosbag2 metadata version written: 8 is what ROS 2 Jazzy's rosbag2 writes and reads.
BAG_VERSION = 8
_FILE_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
_PLUGIN = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag cannot be read or written as asked; the text says which bag, what was wrong and what to do."""


class OutputExistsError(BagError, FileExistsError):
    """The output path exists and ``force`` was not given."""


# --------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: ``name``, ``msgtype`` (``pkg/msg/Name``), message ``count``, RIHS01 ``digest``
    (empty when the bag stores none), ``msgdef`` text and ``qos`` (rosbags ``Qos`` profiles as recorded)."""

    name: str
    msgtype: str
    count: int
    digest: str = ""
    msgdef: str = ""
    msgdef_format: str = "ros2msg"
    qos: tuple = ()


@dataclass
class BagMessage:
    """One message: ``topic``, ``msgtype``, ``log_time_ns`` (receive time recorded in the bag), serialised CDR
    ``raw`` bytes and, when decoded, ``msg`` (a rosbags dataclass)."""

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes
    msg: Any = None


def _storage_of(path: Path) -> str:
    if path.is_dir():
        meta = path / "metadata.yaml"
        if not meta.exists():
            raise BagError(f"{path} is a directory but not a rosbag2 bag (no metadata.yaml)")
        import yaml

        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            return str(info["storage_identifier"])
        except Exception as exc:  # noqa: BLE001 - report any unreadable metadata the same way
            raise BagError(f"cannot read {meta}: {exc}") from exc
    for storage, suffix in _FILE_SUFFIX.items():
        if path.suffix == suffix:
            return storage
    raise BagError(f"{path} is not a rosbag2 bag: give a bag directory, a .mcap file or a .db3 file")


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


class BagReader:
    """Read-only access to a rosbag2 bag (directory, ``.mcap`` or ``.db3``); use as a context manager.

    Attributes after opening: ``path``, ``storage`` (``"mcap"`` / ``"sqlite3"``), ``topics`` (name ->
    :class:`TopicInfo`), ``message_count``, ``start_ns``/``end_ns`` (first/last log time), ``duration_s``.
    """

    def __init__(self, path: str | os.PathLike, *, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {str(self.path)!r} does not exist")
        self.storage = _storage_of(self.path)
        self.typestore = typestore if typestore is not None else get_gen3d_typestore()
        self._reader: Reader | None = None
        self._decoders: dict[str, Typestore] = {}  # msgtype -> store that decodes it
        self.topics: dict[str, TopicInfo] = {}

    # context management
    def open(self) -> "BagReader":
        from rosbags.rosbag2 import ReaderError

        try:
            reader = Reader(self.path)
            reader.open()
        except (ReaderError, KeyError, ValueError) as exc:
            raise BagError(f"cannot open bag {self.path}: {exc}") from exc
        self._reader = reader
        topics: dict[str, TopicInfo] = {}
        for conn in reader.connections:
            qos = tuple(conn.ext.offered_qos_profiles) if isinstance(conn.ext, ConnectionExtRosbag2) else ()
            fmt = {MessageDefinitionFormat.IDL: "ros2idl"}.get(conn.msgdef.format, "ros2msg")
            prev = topics.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            topics[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count, conn.digest, conn.msgdef.data, fmt, qos)
        self.topics = dict(sorted(topics.items()))
        self._decoders = {}
        for conn in reader.connections:
            if conn.msgtype not in self._decoders:
                self._decoders[conn.msgtype] = self._decoder_for(conn)
        return self

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

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
        return int(self._open_reader.message_count)

    @property
    def start_ns(self) -> int:
        return int(self._open_reader.start_time) if self.message_count else 0

    @property
    def end_ns(self) -> int:
        # rosbags reports end_time one past the last message
        return int(self._open_reader.end_time) - 1 if self.message_count else 0

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
        if known and (not conn.digest or not conn.digest.startswith("RIHS01_")
                      or self.typestore.hash_rihs01(conn.msgtype) == conn.digest):
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
                             "definition stored in the bag", self.path, conn.msgtype, conn.digest)
                return store
        if known:
            log.warning("bag %s: %s hash %s differs from ours and the bag stores no definition; decoding with "
                        "the Jazzy definition", self.path, conn.msgtype, conn.digest)
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
        decoded); with ``decode=False`` only ``raw`` is, and :meth:`decode` decodes on demand.
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
        for conn, timestamp, raw in self._ordered(reader, conns, start_ns, stop_ns):
            message = BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(raw))
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
    """Summary of a bag as plain data: path, storage, topics (type, count, hash), message count, times."""
    with BagReader(path) as bag:
        return {
            "path": str(bag.path), "storage": bag.storage, "message_count": bag.message_count,
            "start_ns": bag.start_ns, "end_ns": bag.end_ns, "duration_s": bag.duration_s,
            "topics": {name: {"type": t.msgtype, "count": t.count, "type_hash": t.digest}
                       for name, t in bag.topics.items()},
        }


def read_messages(path: str | os.PathLike, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Decoded messages of ``topics`` of the bag at ``path`` in log-time order (opens and closes the bag)."""
    with BagReader(path) as bag:
        yield from bag.messages(topics)


# --------------------------------------------------------------------------------------------------- writing


def output_form(path: str | os.PathLike, storage: str | None = None) -> tuple[Path, str, bool]:
    """``(path, storage, single_file)`` for an output path: ``.mcap``/``.db3`` name a single file of that
    storage, anything else a rosbag2 directory (``storage`` default ``"mcap"``)."""
    path = Path(path)
    by_suffix = {suffix: name for name, suffix in _FILE_SUFFIX.items()}.get(path.suffix)
    if by_suffix is not None:
        if storage is not None and storage != by_suffix:
            raise BagError(f"output {path} ends in {path.suffix!r}, a {by_suffix} file, but storage={storage!r} "
                           f"was asked; name it *{_FILE_SUFFIX[storage]} or a directory")
        return path, by_suffix, True
    storage = storage or "mcap"
    if storage not in STORAGES:
        raise BagError(f"unknown rosbag2 storage {storage!r}; choose one of {list(STORAGES)}")
    return path, storage, False


@dataclass
class _Topic:
    connection: Connection
    msgtype: str
    count: int = 0


@dataclass
class BagWriter:
    """Writes a rosbag2 bag atomically (see module docstring). Use as a context manager, or call
    :meth:`open`, then :meth:`commit` (success) or :meth:`abort` (discard).

    ``path``: output (directory, or ``*.mcap`` / ``*.db3`` file); ``storage``: ``"mcap"`` (default) or
    ``"sqlite3"``; ``force``: replace an existing output; ``typestore``: serialising store (gen3d by default).
    """

    path: str | os.PathLike
    storage: str | None = None
    force: bool = False
    typestore: Typestore | None = None
    version: int = BAG_VERSION
    topics: dict[str, _Topic] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.path, self.storage, self.single_file = output_form(self.path, self.storage)
        self.typestore = self.typestore if self.typestore is not None else get_gen3d_typestore()
        self._tmpdir: Path | None = None
        self._writer: Writer | None = None

    # lifecycle
    def open(self) -> "BagWriter":
        if self._writer is not None:
            raise BagError(f"bag writer for {self.path} is already open")
        check_output(self.path, force=self.force)
        parent = self.path.parent
        if not parent.is_dir():
            raise BagError(f"cannot write {self.path}: folder {parent} does not exist")
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=parent))
        stem = self.path.stem if self.single_file else self.path.name
        try:
            self._writer = Writer(self._tmpdir / stem, version=self.version, storage_plugin=_PLUGIN[self.storage])
            self._writer.open()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __enter__(self) -> "BagWriter":
        return self if self._writer is not None else self.open()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def abort(self) -> None:
        """Discard everything written; the output path is left as it was before :meth:`open`."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - cleaning up after an error, keep the original one
                log.debug("rosbags writer abort failed", exc_info=True)
        self._cleanup()

    def commit(self) -> Path:
        """Finish the bag and move it into place (replacing an existing output when ``force``)."""
        writer = self._require_open()
        try:
            writer.close()
            self._writer = None
            bag_dir = self._tmpdir / (self.path.stem if self.single_file else self.path.name)
            built = bag_dir / f"{self.path.stem}{_FILE_SUFFIX[self.storage]}" if self.single_file else bag_dir
            check_output(self.path, force=self.force)  # it may have appeared while we wrote
            move_into_place(built, self.path, self._tmpdir)
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        log.debug("wrote %s (%s, %d messages on %d topics)", self.path, self.storage,
                 sum(t.count for t in self.topics.values()), len(self.topics))
        return self.path

    def _cleanup(self) -> None:
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None and tmpdir.exists():
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _require_open(self) -> Writer:
        if self._writer is None:
            raise BagError(f"bag writer for {self.path} is not open")
        return self._writer

    # topics and messages
    def add_topic(self, topic: str, msgtype: str, *, msgdef: str | None = None, rihs01: str | None = None,
                  qos: Sequence[Any] = ()) -> None:
        """Declare ``topic`` of ``msgtype``. Definition and hash come from the typestore unless given (copying
        a topic of another bag verbatim). Declaring a topic again with the same type is a no-op."""
        writer = self._require_open()
        if topic in self.topics:
            if self.topics[topic].msgtype != msgtype:
                raise BagError(f"topic {topic} is already declared as {self.topics[topic].msgtype}, not {msgtype}")
            return
        if msgdef is None or rihs01 is None:
            if msgtype not in self.typestore.types:
                raise BagError(f"cannot write {msgtype} on {topic}: the type is not in the gen3d typestore")
            msgdef, rihs01 = None, None
        conn = writer.add_connection(topic, msgtype, typestore=self.typestore, msgdef=msgdef, rihs01=rihs01,
                                     offered_qos_profiles=list(qos))
        self.topics[topic] = _Topic(conn, msgtype)

    def write(self, topic: str, msg: Any, time_ns: int, *, msgtype: str | None = None) -> None:
        """Serialise ``msg`` (a rosbags-world message, e.g. from ``rosbags_factory()``) and write it on ``topic``
        at log time ``time_ns``. The topic is declared on first use. An rclpy message is refused: serialise it
        with ``rclpy.serialization.serialize_message`` and use :meth:`write_raw` (``io/`` never imports rclpy)."""
        if not hasattr(msg, "__msgtype__"):
            raise TypeError(f"BagWriter.write takes rosbags messages, got {type(msg).__module__}."
                            f"{type(msg).__name__} on {topic}; serialise rclpy messages with "
                            "rclpy.serialization.serialize_message and call write_raw")
        msgtype = msgtype or msgtype_of(msg)
        if topic not in self.topics:
            self.add_topic(topic, msgtype)
        raw = self.typestore.serialize_cdr(msg, msgtype)
        self.write_raw(topic, raw, time_ns)

    def write_raw(self, topic: str, raw: bytes | memoryview, time_ns: int) -> None:
        """Write already serialised CDR ``raw`` on a declared ``topic`` at ``time_ns``."""
        writer = self._require_open()
        entry = self.topics.get(topic)
        if entry is None:
            raise BagError(f"topic {topic} was not declared; call add_topic first")
        if time_ns < 0:
            raise BagError(f"log time must be >= 0 ns, got {time_ns} on {topic}")
        writer.write(entry.connection, int(time_ns), raw)
        entry.count += 1

    @property
    def counts(self) -> dict[str, int]:
        return {name: t.count for name, t in self.topics.items()}


def check_output(path: Path, *, force: bool) -> None:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``force`` is off."""
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputExistsError(f"output {path} exists; pass force=True (--force) to replace it")


def move_into_place(built: Path, dest: Path, scratch: Path) -> None:
    """Move ``built`` to ``dest``. A file replaces atomically (``os.replace``); a directory is swapped by two
    renames inside the same folder, the old one parked in ``scratch`` and removed with it."""
    if built.is_dir() and (dest.exists() or dest.is_symlink()):
        parked = scratch / "previous"
        os.rename(dest, parked)
        try:
            os.rename(built, dest)
        except BaseException:
            os.rename(parked, dest)
            raise
    elif dest.is_dir() and not dest.is_symlink():
        parked = scratch / "previous"
        os.rename(dest, parked)
        try:
            os.replace(built, dest)
        except BaseException:
            os.rename(parked, dest)
            raise
    else:
        os.replace(built, dest)


def write_bag(path: str | os.PathLike, messages: Iterable[tuple[str, Any, int]], *, storage: str | None = None,
              force: bool = False) -> Path:
    """Write ``(topic, msg, time_ns)`` triples as a new bag at ``path`` (atomic; see :class:`BagWriter`)."""
    with BagWriter(path, storage=storage, force=force) as writer:
        for topic, msg, time_ns in messages:
            writer.write(topic, msg, time_ns)
    return Path(path)


def same_or_nested(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` are the same or one contains the other (after resolving links)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents
