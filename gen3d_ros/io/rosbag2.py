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

Writing (:class:`BagWriter`) serialises with the gen3d typestore, so every topic carries the message definition
and the RIHS01 type hash that rclpy computes, and rviz2 / Foxglove / ``ros2 bag play`` replay it. mcap files get
real CRC-32s (chunks, data section, summary; rosbags writes 0, "not computed"), so a flipped payload byte is
reported instead of decoded. Every bag is marked ``custom_data: {generator: gen3d_ros <version>}``
(:func:`bag_custom_data`, :func:`gen3d_ros.outputs.written_by_gen3d`). Writing is atomic and follows
:mod:`gen3d_ros.outputs`: the output is checked before anything is written (an existing one is replaced only with
``force=True`` and only when gen3d_ros wrote it), the bag is built in a hidden temporary sibling and renamed into
place on success; on any error the temporary is removed and the output path is left as it was.

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
import io
import logging
import os
import shutil
import sqlite3
import struct
from binascii import crc32
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Iterable, Iterator, Sequence
from urllib.parse import quote

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter, decompress
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gen3d_ros import outputs
from gen3d_ros.io.messages import msgtype_of
from gen3d_ros.io.typestore import get_gen3d_typestore

log = logging.getLogger("gen3d_ros.io.rosbag2")

STORAGES = ("mcap", "sqlite3")
#: rosbag2 metadata version written: 8 is what ROS 2 Jazzy's rosbag2 writes and reads.
BAG_VERSION = 8
_FILE_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
_PLUGIN = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: Largest metadata.yaml (or serialised metadata inside a storage file) read: real ones are a few kB.
MAX_METADATA_BYTES = 16 * 1024**2

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_FOOTER_BYTES = 1 + 8 + 8 + 8 + 4 + len(_MCAP_MAGIC)  # opcode, length, summary_start, summary_offset_start, crc
_DATA_END_BYTES = 1 + 8 + 4  # opcode, length, data_section_crc
#: Offset of ``uncompressed_crc`` in a chunk record: opcode, record length, start time, end time, uncompressed size.
_CHUNK_CRC_AT = 1 + 8 + 8 + 8 + 8
_OP_MESSAGE, _OP_CHUNK, _OP_METADATA, _OP_DATA_END = 0x05, 0x06, 0x0C, 0x0F


class BagError(RuntimeError):
    """A bag cannot be read or written as asked; the text says which bag, what was wrong and what to do."""


class OutputExistsError(BagError, outputs.OutputExistsError):
    """The output path exists and ``force`` was not given (also a :class:`gen3d_ros.outputs.OutputExistsError`,
    so a ``ValueError`` and a ``FileExistsError``)."""


# --------------------------------------------------------------------------------------------------- reading


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


#: rosbags' terse texts for the commonest damage, said so that a user knows what happened.
_ROSBAGS_TEXTS = {
    "File magic is invalid.": "it does not start with the mcap magic bytes: it is not an mcap file",
    "File end magic is invalid.": "it does not end with an mcap footer: the file is truncated (a recording that "
                                  "was cut off?) or is not an mcap file",
    "Invalid MCAP footer.": "its footer record is corrupt",
    "Chunk checksum mismatch.": "a chunk fails its CRC check: its message bytes are corrupt",
}


def _describe(exc: BaseException) -> str:
    """What a low-level exception raised on malformed bytes means, for a message a user can act on."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if isinstance(exc, ReaderError):
        first = text[0] if text else "unreadable"
        return _ROSBAGS_TEXTS.get(first, first)
    if isinstance(exc, (struct.error, IndexError, EOFError)) or (isinstance(exc, TypeError) and "ord()" in str(exc)):
        return f"a record is cut short: the file is truncated or a length field is corrupt ({detail})"
    if isinstance(exc, UnicodeDecodeError):
        return f"a name or text field is not UTF-8: the file is corrupt ({detail})"
    if isinstance(exc, (OverflowError, MemoryError)):
        return f"a length or offset field is far beyond the file: it is corrupt ({detail})"
    if isinstance(exc, (sqlite3.Error,)) or type(exc).__module__ == "apsw":
        return f"the SQLite database is damaged or not a rosbag2 database ({detail})"
    return detail


class _BoundedFile(io.BufferedReader):
    """A read-only file whose reads never ask for more than what is left of it.

    rosbags reads a record by the length its length field claims; a corrupt length (up to 2**64) must give a
    "truncated record" error, not an allocation of that many bytes (``BufferedReader.read(n)`` allocates ``n``
    before it reads)."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self.size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        if size is not None and size > 0:
            size = min(size, max(0, self.size - self.tell()))
        return super().read(size)


def _mcap_footer(bio: BinaryIO, size: int) -> tuple[int, int] | None:
    """``(summary_start, summary_crc)`` of an mcap file, or None when its footer is not a valid one."""
    if size < len(_MCAP_MAGIC) * 2 + _FOOTER_BYTES:
        return None
    bio.seek(size - _FOOTER_BYTES)
    data = bio.read(_FOOTER_BYTES)
    if len(data) != _FOOTER_BYTES or data[:9] != b"\x02" + (20).to_bytes(8, "little") or data[-8:] != _MCAP_MAGIC:
        return None
    summary_start, _, summary_crc = struct.unpack_from("<QQI", data, 9)
    return summary_start, summary_crc


def _crc_of_range(bio: BinaryIO, start: int, stop: int, crc: int = 0) -> int:
    """CRC-32 of bytes ``[start, stop)`` of ``bio``, read 1 MiB at a time."""
    bio.seek(start)
    left = stop - start
    while left > 0:
        block = bio.read(min(left, 1 << 20))
        if not block:
            raise ReaderError(f"file ends at byte {bio.tell()}, before byte {stop} that its footer points to")
        crc = crc32(block, crc)
        left -= len(block)
    return crc


class _McapStorage(McapReader):
    """rosbags' mcap reader, hardened: bounded reads, a checked summary CRC, every failure a ``ReaderError``
    naming the file and the byte offset, and message records of undeclared channels counted instead of dropped
    silently (:attr:`skipped_records`).

    Message iteration over indexed (chunked) files is our own: rosbags' drops records whose channel id is not
    declared without a trace, and trusts the chunk index's sizes over the chunk record's own."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._undeclared_by_chunk: dict[int, int] = {}  # chunk offset -> undeclared records (index, then exact)
        self._undeclared_unindexed = 0

    @property
    def skipped_records(self) -> int:
        """Message records of channels the file never declares (from the index at open; exact per chunk read)."""
        return sum(self._undeclared_by_chunk.values()) + self._undeclared_unindexed

    def _fail(self, what: str, exc: BaseException) -> ReaderError:
        """``exc`` (raised on the file's bytes) as one ReaderError: file name, ``what`` failed, byte offset."""
        offset = None
        bio = self.bio
        if bio is not None and not bio.closed:
            try:
                offset = bio.tell()
            except (OSError, ValueError):
                offset = None
        detail = _describe(exc)
        where = f" (near byte {offset})" if offset is not None and "byte" not in detail \
            and "offset" not in detail else ""
        return ReaderError(f"{self.path.name}{': ' + what if what else ''}{where}: {detail}")

    def open(self) -> None:
        try:
            self.bio = _BoundedFile(self.path)
        except OSError as exc:
            raise ReaderError(f"{self.path.name}: cannot open: {exc.strerror or exc}") from exc
        try:
            if self.bio.size == 0:
                raise ReaderError("the file is empty (0 bytes)")
            self._check_summary_crc()
            self._open()
            declared = set(self.channels)
            for chunk in self.chunks:
                self._undeclared_by_chunk[chunk.chunk_start_offset] = sum(
                    n for cid, n in chunk.channel_count.items() if cid not in declared)
            if not self.chunks and self.statistics is not None:
                self._undeclared_unindexed = sum(
                    n for cid, n in self.statistics.channel_message_counts.items() if cid not in declared)
        except BaseException as exc:
            failure = self._fail("not a readable mcap file", exc) if isinstance(exc, Exception) else None
            try:
                self.close()
            except Exception:  # noqa: BLE001 - closing after the real error
                pass
            if failure is None:
                raise
            raise failure from exc

    def close(self) -> None:
        if self.bio is not None:
            super().close()

    def _check_summary_crc(self) -> None:
        """Compare the footer's summary CRC (when not 0) with the summary bytes: a flipped byte in the index
        would otherwise send the reader to wrong offsets. (The data section CRC is not checked: it needs the
        whole file read; the chunk CRCs, checked as chunks are read, cover the messages.)"""
        bio = self.bio
        assert isinstance(bio, _BoundedFile)
        footer = _mcap_footer(bio, bio.size)
        if footer is None:
            bio.seek(0)
            return  # rosbags reports what is wrong with the footer
        summary_start, summary_crc = footer
        if summary_crc and summary_start:
            if not len(_MCAP_MAGIC) <= summary_start <= bio.size - _FOOTER_BYTES:
                raise ReaderError(f"footer points the summary to byte {summary_start}, outside the file "
                                  f"({bio.size} bytes)")
            actual = _crc_of_range(bio, summary_start, bio.size - len(_MCAP_MAGIC) - 4)
            if actual != summary_crc:
                raise ReaderError(f"summary section (bytes {summary_start}..{bio.size}) fails its CRC check "
                                  f"(stored {summary_crc:#010x}, computed {actual:#010x}): the index is corrupt")
        bio.seek(0)

    def messages(self, connections: Any, start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        try:
            if not self.chunks:  # unindexed file: rosbags scans it (undeclared records counted at open)
                yield from super().messages(connections, start, stop)
                return
            wanted = {conn.id: conn for conn in connections}
            lo = 0 if start is None else start
            hi = 2**63 - 1 if stop is None else stop
            streams = [self._chunk_messages(i, chunk, wanted, lo, hi) for i, chunk in enumerate(self.chunks)
                       if chunk.message_start_time < hi and lo <= chunk.message_end_time
                       and any(chunk.channel_count.get(cid, 0) for cid in wanted)]
            for _, _, _, conn, timestamp, data in heapq.merge(*streams, key=lambda item: item[:3]):
                if conn is not None:
                    yield conn, timestamp, data
        except Exception as exc:  # noqa: BLE001 - any failure on malformed bytes is one "cannot read" error
            raise self._fail("", exc) from exc

    def _chunk_messages(self, index: int, chunk: Any, wanted: dict[int, Connection], lo: int,
                        hi: int) -> Iterator[tuple]:
        """The messages of one chunk in time order, after a placeholder at the chunk's start time (so that
        ``heapq.merge`` reads a chunk only when its time comes). The chunk record's own fields are used, its
        size checked against the record length, its CRC (when not 0) against the uncompressed bytes."""
        yield chunk.message_start_time, index, -1, None, 0, b""
        bio = self.bio
        assert bio is not None
        at = chunk.chunk_start_offset
        bio.seek(at)
        head = bio.read(_CHUNK_CRC_AT + 4 + 4)
        if len(head) != _CHUNK_CRC_AT + 8 or head[0] != _OP_CHUNK:
            raise ReaderError(f"the index points to a chunk at byte {at}, but there is "
                              f"{'no record' if len(head) < 9 else f'a record of type {head[0]:#04x}'}")
        length, _, _, size, crc, name_len = struct.unpack_from("<QQQQII", head, 1)
        end = at + 9 + length
        if end > bio.size or name_len > 64:
            raise ReaderError(f"chunk at byte {at} claims {length} bytes, the file has {bio.size - at - 9} "
                              "after its header: it is truncated or the length is corrupt")
        compression = bio.read(name_len).decode()
        (compressed_size,) = struct.unpack("<Q", bio.read(8))
        if bio.tell() + compressed_size > end:
            raise ReaderError(f"chunk at byte {at}: its {compressed_size} data bytes overrun the record "
                              f"({length} bytes)")
        data = bio.read(compressed_size)
        try:
            raw = decompress(data, compression, size, crc)
        except ReaderError as exc:
            if "checksum" in str(exc):
                raise ReaderError(f"chunk at byte {at} fails its CRC check (stored {crc:#010x}): its message "
                                  "bytes are corrupt") from None
            raise ReaderError(f"chunk at byte {at}: {exc}") from None
        found: list[tuple] = []
        undeclared = 0
        pos, total = 0, len(raw)
        while pos < total:
            if pos + 9 > total:
                raise ReaderError(f"chunk at byte {at}: record header cut short at chunk byte {pos}")
            op = raw[pos]
            (rec_len,) = struct.unpack_from("<Q", raw, pos + 1)
            body, pos = pos + 9, pos + 9 + rec_len
            if pos > total:
                raise ReaderError(f"chunk at byte {at}: record at chunk byte {body - 9} claims {rec_len} bytes, "
                                  f"{total - body} are left in the chunk")
            if op != _OP_MESSAGE:
                continue
            if rec_len < 22:
                raise ReaderError(f"chunk at byte {at}: message record at chunk byte {body - 9} is {rec_len} "
                                  "bytes, shorter than its 22-byte header")
            cid, _, log_time, _ = struct.unpack_from("<HIQQ", raw, body)
            if cid not in self.channels:
                undeclared += 1
            elif cid in wanted and lo <= log_time < hi:
                found.append((log_time, index, body, wanted[cid], log_time, raw[body + 22:pos]))
        self._undeclared_by_chunk[at] = undeclared
        found.sort(key=lambda item: item[:3])
        yield from found


class _Sqlite3Storage(Sqlite3Reader):
    """rosbags' sqlite3 reader with every failure a ``ReaderError`` naming the file, rows checked before use
    (a damaged row may hold text or a number where the blob should be), and messages whose topic id the
    ``topics`` table does not declare counted (:attr:`skipped_records`; rosbags' JOIN drops them)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.skipped_records = 0

    def open(self) -> None:
        if not Path(self.path).is_file():
            raise ReaderError(f"{Path(self.path).name}: not a file")
        if Path(self.path).stat().st_size == 0:
            raise ReaderError(f"{Path(self.path).name}: the file is empty (0 bytes)")
        try:
            super().open()
            assert self.dbconn is not None
            ((count,),) = list(self.dbconn.execute(
                "SELECT COUNT(*) FROM messages WHERE topic_id NOT IN (SELECT id FROM topics)"))
            self.skipped_records = int(count)
        except Exception as exc:  # noqa: BLE001 - any failure on a damaged database is one "cannot read" error
            if self.dbconn is not None:
                try:
                    self.close()
                except Exception:  # noqa: BLE001
                    pass
            raise ReaderError(f"{Path(self.path).name}: not a readable rosbag2 sqlite3 database: "
                              f"{_describe(exc)}") from exc

    def messages(self, connections: Any, start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        try:
            for conn, timestamp, data in super().messages(connections, start, stop):
                if not isinstance(data, (bytes, memoryview)) or not isinstance(timestamp, int):
                    raise ReaderError(f"{Path(self.path).name}: a message row of {conn.topic} holds a "
                                      f"{type(timestamp).__name__} timestamp and {type(data).__name__} data, not "
                                      "an integer and a blob: the database is damaged")
                yield conn, timestamp, data
        except ReaderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ReaderError(f"{Path(self.path).name}: cannot read messages: {_describe(exc)}") from exc


def _load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load`` with libyaml's C parser when PyYAML has it (30x faster on a metadata.yaml)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def _read_metadata(bag_dir: Path) -> dict:
    """``rosbag2_bagfile_information`` of ``bag_dir/metadata.yaml``, checked: YAML of sane size, a supported
    storage, and ``relative_file_paths`` naming existing regular files of that storage inside ``bag_dir``."""
    import yaml

    meta = bag_dir / "metadata.yaml"
    if not meta.is_file():
        raise BagError(f"{bag_dir} is a directory but not a rosbag2 bag (no metadata.yaml file)")
    size = meta.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise BagError(f"{meta} is {size} bytes; a rosbag2 metadata.yaml is a few kB: it is not one")
    try:
        text = meta.read_bytes()
    except OSError as exc:
        raise BagError(f"cannot read {meta}: {exc.strerror or exc}") from exc
    try:
        data = _load_yaml(text)
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError, ValueError) as exc:
        raise BagError(f"{meta} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta} has no rosbag2_bagfile_information mapping; it is not rosbag2 metadata")
    storage = info.get("storage_identifier")
    if storage not in STORAGES:
        raise BagError(f"{meta}: storage_identifier {storage!r} is not one of {list(STORAGES)}")
    files = info.get("relative_file_paths")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise BagError(f"{meta}: relative_file_paths must be a list of file names, got {files!r:.200}")
    mode = str(info.get("compression_mode") or "").lower()
    suffixes = (_FILE_SUFFIX[storage] + ".zstd",) if mode == "file" else (_FILE_SUFFIX[storage],)
    seen: set[str] = set()
    for entry in files:
        name = PurePath(entry).name  # rosbags reads each file by its name inside the bag directory
        if not name.endswith(suffixes):
            raise BagError(f"{meta} lists {entry!r} as a storage file, but a {storage} bag's files end in "
                           f"{suffixes[0]}; the metadata does not belong to these files")
        if name in seen:
            raise BagError(f"{meta} lists the storage file {name!r} twice")
        seen.add(name)
        path = bag_dir / name
        if not path.is_file():
            raise BagError(f"{meta} lists the storage file {name!r}, which is "
                           f"{'not a file' if path.exists() else 'missing'} in {bag_dir}")
    return info


def _storage_of(path: Path) -> str:
    if path.is_dir():
        return str(_read_metadata(path)["storage_identifier"])
    for storage, suffix in _FILE_SUFFIX.items():
        if path.suffix == suffix:
            if not path.is_file():
                raise BagError(f"{path} is not a regular file")
            return storage
    raise BagError(f"{path} is not a rosbag2 bag: give a bag directory, a .mcap file or a .db3 file")


class _DirectoryStorage(DirectoryReader):
    """rosbags' directory reader on our hardened storage readers, metadata checked first (:func:`_read_metadata`)."""

    STORAGE_PLUGINS = {"mcap": _McapStorage, "sqlite3": _Sqlite3Storage}

    def open(self) -> None:
        _read_metadata(Path(self.path))
        super().open()

    @property
    def skipped_records(self) -> int:
        return sum(getattr(s, "skipped_records", 0) for s in self.storages)


class _Reader(Reader):
    STORAGE_PLUGINS = {"dir": _DirectoryStorage, ".mcap": _McapStorage, ".db3": _Sqlite3Storage}


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
        self.storage = _storage_of(self.path)
        self.typestore = typestore if typestore is not None else get_gen3d_typestore()
        self._reader: Reader | None = None
        self._decoders: dict[str, Typestore | None] = {}  # msgtype -> store that decodes it
        self._counts = (0, 0, 0)  # message count, start, end (ns)
        self._unmatched = 0  # records of storage-file topics that metadata.yaml does not list
        self._skipped_closed = 0
        self._warned = False
        self.topics: dict[str, TopicInfo] = {}

    def _failure(self, doing: str, exc: BaseException) -> BagError:
        return BagError(f"cannot {doing} bag {self.path}: {_describe(exc)}; the bag is damaged or not a rosbag2 "
                        "bag (re-record or repair it, e.g. `ros2 bag reindex` / `mcap recover`)")

    # context management
    def open(self) -> "BagReader":
        """Open the bag and read its index (topics, counts, times); :class:`BagError` when it is unreadable."""
        if self._reader is not None:
            return self
        try:
            reader = _Reader(self.path)
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


# --------------------------------------------------------------------------------------------------- custom data


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
            info: Any = _read_metadata(path)
        elif _storage_of(path) == "mcap":
            info = _mcap_stored_metadata(path)
        else:
            info = _db3_stored_metadata(path)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable in any way: one clear error
        raise BagError(f"cannot read the metadata of bag {path}: {_describe(exc)}") from exc
    custom = info.get("custom_data") if isinstance(info, dict) else None
    if custom is None:
        return {}
    if not isinstance(custom, dict):
        raise BagError(f"bag {path}: custom_data is a {type(custom).__name__}, not a mapping of strings")
    return {str(key): str(value) for key, value in custom.items()}


def _yaml_mapping(text: str | bytes, where: str) -> dict:
    import yaml

    try:
        data = _load_yaml(text)
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
    with _BoundedFile(path) as bio:
        size = bio.size
        if bio.read(len(_MCAP_MAGIC)) != _MCAP_MAGIC:
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
            if op in (_OP_DATA_END, 0x02):  # end of the data section / footer: no rosbag2 metadata record
                return {}
            if op != _OP_METADATA:
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


# --------------------------------------------------------------------------------------------------- writing


class _CrcMcapWriter(McapWriter):
    """rosbags' mcap writer with the CRC-32s the MCAP specification defines filled in.

    rosbags writes 0 ("not computed") for the chunk, data section and summary CRCs, so a flipped byte in a
    message payload decodes as a wrong value instead of failing. The CRCs are patched in after rosbags wrote
    each record (its layout is fixed by the specification), so rosbags' writer itself is not copied:

    - chunk ``uncompressed_crc``: CRC of the chunk's uncompressed records, at byte 33 of the chunk record;
    - data end ``data_section_crc``: CRC of every byte before the Data End record (leading magic included);
    - footer ``summary_crc``: CRC from the summary start through the footer's ``summary_offset_start`` field.
    """

    def close_chunk(self) -> None:
        crc = crc32(self.chunk.bio.getbuffer())
        start = self.bio.tell()
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(start + _CHUNK_CRC_AT)
        self.bio.write(crc.to_bytes(4, "little"))
        self.bio.seek(end)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, metadata)
        with open(self.path, "r+b") as bio:  # atomic: patches the CRCs of the bag in BagWriter's temporary folder
            size = bio.seek(0, os.SEEK_END)
            footer = _mcap_footer(bio, size)
            if footer is None or not footer[0]:
                raise BagError(f"rosbags wrote {self.path} without the footer/summary this writer expects; "
                               "check the rosbags version (0.11 is supported)")
            summary_start = footer[0]
            data_end = summary_start - _DATA_END_BYTES  # rosbags writes the summary right after Data End
            bio.seek(data_end)
            if bio.read(9) != bytes([_OP_DATA_END]) + (4).to_bytes(8, "little"):
                raise BagError(f"rosbags wrote {self.path} without a Data End record before the summary; "
                               "check the rosbags version (0.11 is supported)")
            data_crc = _crc_of_range(bio, 0, data_end)
            bio.seek(data_end + 9)
            bio.write(data_crc.to_bytes(4, "little"))
            summary_crc = _crc_of_range(bio, summary_start, size - len(_MCAP_MAGIC) - 4)
            bio.seek(size - len(_MCAP_MAGIC) - 4)
            bio.write(summary_crc.to_bytes(4, "little"))


class _Writer(Writer):
    """rosbags' rosbag2 writer with the CRC-writing mcap storage (:class:`_CrcMcapWriter`)."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _CrcMcapWriter}


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
    ``"sqlite3"``; ``force``: replace an existing output written by gen3d_ros; ``typestore``: serialising store
    (gen3d by default).

    :meth:`open` checks the output with :func:`gen3d_ros.outputs.prepare_output`: :class:`OutputExistsError`
    when it exists without ``force``, :class:`gen3d_ros.outputs.OutputError` (a ``ValueError``) when it exists
    but gen3d_ros did not write it, is a link, or its folder is not writable. The bag carries
    ``custom_data: {generator: gen3d_ros.outputs.GENERATOR}``.
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
        self._check_output()
        # A hidden sibling holding the rosbag2 directory under its final name (the storage file is named after
        # it); a killed run's leftover is removed by the next prepare_output in this folder.
        self._tmpdir = outputs.temporary_sibling(self.path, keep_suffix=False)
        self._tmpdir.mkdir()
        stem = self.path.stem if self.single_file else self.path.name
        try:
            self._writer = _Writer(self._tmpdir / stem, version=self.version, storage_plugin=_PLUGIN[self.storage])
            self._writer.set_custom_data("generator", outputs.GENERATOR)
            self._writer.open()
        except BaseException:
            self._writer = None
            self._cleanup()
            raise
        return self

    def _check_output(self) -> None:
        try:
            outputs.prepare_output(self.path, force=self.force, what="output bag")
        except outputs.OutputExistsError as exc:
            raise OutputExistsError(str(exc)) from None

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
            self._check_output()  # it may have appeared while we wrote
            outputs.replace_with(built, self.path)
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
    """Raise :class:`OutputExistsError` when ``path`` exists and ``force`` is off (kept for callers outside
    this module; :class:`BagWriter` uses :func:`gen3d_ros.outputs.prepare_output`)."""
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


def _is_gen3d_bag(path: Path) -> bool:
    """Whether the bag at ``path`` carries the gen3d_ros marker in its custom_data (False when unreadable)."""
    try:
        return bag_custom_data(path).get("generator", "").startswith(outputs.MARKER_WORD)
    except (OSError, BagError):
        return False


outputs.register_marker_reader("bag", _is_gen3d_bag)
