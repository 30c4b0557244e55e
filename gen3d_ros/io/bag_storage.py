"""rosbag2 storage files read safely: rosbags' mcap, sqlite3 and directory readers, hardened.

Whatever is wrong with a bag's bytes (a zero-byte or truncated file, a corrupt length field, a chunk or summary
whose CRC does not match, a ``metadata.yaml`` that is not YAML or names files that are not there, a ``.db3`` that
is not an SQLite database), the readers here raise one ``ReaderError`` / :class:`BagError` naming the file, what is
wrong and, when known, the byte offset: never a raw ``rosbags`` / ``struct`` / ``sqlite`` exception. Message
records whose channel (topic) id the bag never declares are counted (``skipped_records``), not dropped silently.

Also the MCAP record layout (magic, footer, record opcodes, CRC offsets) that the hardened reader, the stored
metadata reader (:mod:`gen3d_ros.io.bag_metadata`) and the CRC-writing mcap writer (:mod:`gen3d_ros.io.bag_writer`)
share. :class:`gen3d_ros.io.rosbag2.BagReader` is the public reading API on top of :class:`StorageReader`.
"""

from __future__ import annotations

import heapq
import io
import os
import sqlite3
import struct
from binascii import crc32
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Iterator

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader, decompress
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

STORAGES = ("mcap", "sqlite3")
FILE_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
#: Largest metadata.yaml (or serialised metadata inside a storage file) read: real ones are a few kB.
MAX_METADATA_BYTES = 16 * 1024**2

#: MCAP record layout (the specification's, fixed), shared with the stored-metadata reader and the CRC writer.
MCAP_MAGIC = b"\x89MCAP0\r\n"
FOOTER_BYTES = 1 + 8 + 8 + 8 + 4 + len(MCAP_MAGIC)  # opcode, length, summary_start, summary_offset_start, crc
DATA_END_BYTES = 1 + 8 + 4  # opcode, length, data_section_crc
#: Offset of ``uncompressed_crc`` in a chunk record: opcode, record length, start time, end time, uncompressed size.
CHUNK_CRC_AT = 1 + 8 + 8 + 8 + 8
OP_MESSAGE, OP_CHUNK, OP_METADATA, OP_DATA_END = 0x05, 0x06, 0x0C, 0x0F


class BagError(RuntimeError):
    """A bag cannot be read or written as asked; the text says which bag, what was wrong and what to do."""


#: rosbags' terse texts for the commonest damage, said so that a user knows what happened.
_ROSBAGS_TEXTS = {
    "File magic is invalid.": "it does not start with the mcap magic bytes: it is not an mcap file",
    "File end magic is invalid.": "it does not end with an mcap footer: the file is truncated (a recording that "
                                  "was cut off?) or is not an mcap file",
    "Invalid MCAP footer.": "its footer record is corrupt",
    "Chunk checksum mismatch.": "a chunk fails its CRC check: its message bytes are corrupt",
}


def describe_failure(exc: BaseException) -> str:
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


class BoundedFile(io.BufferedReader):
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


def mcap_footer(bio: BinaryIO, size: int) -> tuple[int, int] | None:
    """``(summary_start, summary_crc)`` of an mcap file, or None when its footer is not a valid one."""
    if size < len(MCAP_MAGIC) * 2 + FOOTER_BYTES:
        return None
    bio.seek(size - FOOTER_BYTES)
    data = bio.read(FOOTER_BYTES)
    if len(data) != FOOTER_BYTES or data[:9] != b"\x02" + (20).to_bytes(8, "little") or data[-8:] != MCAP_MAGIC:
        return None
    summary_start, _, summary_crc = struct.unpack_from("<QQI", data, 9)
    return summary_start, summary_crc


def crc_of_range(bio: BinaryIO, start: int, stop: int, crc: int = 0) -> int:
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
        detail = describe_failure(exc)
        where = f" (near byte {offset})" if offset is not None and "byte" not in detail \
            and "offset" not in detail else ""
        return ReaderError(f"{self.path.name}{': ' + what if what else ''}{where}: {detail}")

    def open(self) -> None:
        try:
            self.bio = BoundedFile(self.path)
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
        assert isinstance(bio, BoundedFile)
        footer = mcap_footer(bio, bio.size)
        if footer is None:
            bio.seek(0)
            return  # rosbags reports what is wrong with the footer
        summary_start, summary_crc = footer
        if summary_crc and summary_start:
            if not len(MCAP_MAGIC) <= summary_start <= bio.size - FOOTER_BYTES:
                raise ReaderError(f"footer points the summary to byte {summary_start}, outside the file "
                                  f"({bio.size} bytes)")
            actual = crc_of_range(bio, summary_start, bio.size - len(MCAP_MAGIC) - 4)
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
        head = bio.read(CHUNK_CRC_AT + 4 + 4)
        if len(head) != CHUNK_CRC_AT + 8 or head[0] != OP_CHUNK:
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
            if op != OP_MESSAGE:
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
                              f"{describe_failure(exc)}") from exc

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
            raise ReaderError(f"{Path(self.path).name}: cannot read messages: {describe_failure(exc)}") from exc


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load`` with libyaml's C parser when PyYAML has it (30x faster on a metadata.yaml)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def read_metadata(bag_dir: Path) -> dict:
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
        data = load_yaml(text)
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
    suffixes = (FILE_SUFFIX[storage] + ".zstd",) if mode == "file" else (FILE_SUFFIX[storage],)
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


def storage_of(path: Path) -> str:
    """``"mcap"`` or ``"sqlite3"``: a directory's from its checked ``metadata.yaml``, a file's from its suffix;
    :class:`BagError` for anything else."""
    if path.is_dir():
        return str(read_metadata(path)["storage_identifier"])
    for storage, suffix in FILE_SUFFIX.items():
        if path.suffix == suffix:
            if not path.is_file():
                raise BagError(f"{path} is not a regular file")
            return storage
    raise BagError(f"{path} is not a rosbag2 bag: give a bag directory, a .mcap file or a .db3 file")


class _DirectoryStorage(DirectoryReader):
    """rosbags' directory reader on our hardened storage readers, metadata checked first (:func:`read_metadata`)."""

    STORAGE_PLUGINS = {"mcap": _McapStorage, "sqlite3": _Sqlite3Storage}

    def open(self) -> None:
        read_metadata(Path(self.path))
        super().open()

    @property
    def skipped_records(self) -> int:
        return sum(getattr(s, "skipped_records", 0) for s in self.storages)


class StorageReader(Reader):
    """rosbags' ``Reader`` on the hardened storages: a bag directory, a ``.mcap`` or a ``.db3`` file."""

    STORAGE_PLUGINS = {"dir": _DirectoryStorage, ".mcap": _McapStorage, ".db3": _Sqlite3Storage}
