"""rosbag2 writing with rosbags: atomic, marked as gen3d_ros output, real mcap CRCs.

:class:`BagWriter` serialises with the gen3d typestore, so every topic carries the message definition and the
RIHS01 type hash that rclpy computes, and rviz2 / Foxglove / ``ros2 bag play`` replay it. mcap files get real
CRC-32s (chunks, data section, summary; rosbags writes 0, "not computed"), so a flipped payload byte is reported
instead of decoded. Every bag is marked ``custom_data: {generator: gen3d_ros <version>}``
(:func:`gen3d_ros.io.bag_metadata.bag_custom_data`, :func:`gen3d_ros.outputs.written_by_gen3d`; this module
registers the marker reader). Writing is atomic and follows :mod:`gen3d_ros.outputs`: the output is checked before
anything is written (an existing one is replaced only with ``force=True`` and only when gen3d_ros wrote it), the
bag is built in a hidden temporary sibling and renamed into place on success; on any error the temporary is
removed and the output path is left as it was.

    with BagWriter("out/", storage="mcap") as out:
        out.write("/completion_node/mesh", msg, time_ns)

Output forms: a path ending in ``.mcap`` (``.db3``) becomes a single mcap (sqlite3) file; any other path a
rosbag2 directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from binascii import crc32
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys.store import Typestore

from gen3d_ros import outputs
from gen3d_ros.io.bag_metadata import bag_custom_data
from gen3d_ros.io.bag_storage import (CHUNK_CRC_AT, DATA_END_BYTES, FILE_SUFFIX, MCAP_MAGIC, OP_DATA_END, STORAGES,
                                      BagError, crc_of_range, mcap_footer)
from gen3d_ros.io.messages import msgtype_of
from gen3d_ros.io.typestore import get_gen3d_typestore

log = logging.getLogger(__name__)

#: rosbag2 metadata version written: 8 is what ROS 2 Jazzy's rosbag2 writes and reads.
BAG_VERSION = 8
_PLUGIN = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class OutputExistsError(BagError, outputs.OutputExistsError):
    """The output path exists and ``force`` was not given (also a :class:`gen3d_ros.outputs.OutputExistsError`,
    so a ``ValueError`` and a ``FileExistsError``)."""


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
        self.bio.seek(start + CHUNK_CRC_AT)
        self.bio.write(crc.to_bytes(4, "little"))
        self.bio.seek(end)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, metadata)
        with open(self.path, "r+b") as bio:  # atomic: patches the CRCs of the bag in BagWriter's temporary folder
            size = bio.seek(0, os.SEEK_END)
            footer = mcap_footer(bio, size)
            if footer is None or not footer[0]:
                raise BagError(f"rosbags wrote {self.path} without the footer/summary this writer expects; "
                               "check the rosbags version (0.11 is supported)")
            summary_start = footer[0]
            data_end = summary_start - DATA_END_BYTES  # rosbags writes the summary right after Data End
            bio.seek(data_end)
            if bio.read(9) != bytes([OP_DATA_END]) + (4).to_bytes(8, "little"):
                raise BagError(f"rosbags wrote {self.path} without a Data End record before the summary; "
                               "check the rosbags version (0.11 is supported)")
            data_crc = crc_of_range(bio, 0, data_end)
            bio.seek(data_end + 9)
            bio.write(data_crc.to_bytes(4, "little"))
            summary_crc = crc_of_range(bio, summary_start, size - len(MCAP_MAGIC) - 4)
            bio.seek(size - len(MCAP_MAGIC) - 4)
            bio.write(summary_crc.to_bytes(4, "little"))


class _Writer(Writer):
    """rosbags' rosbag2 writer with the CRC-writing mcap storage (:class:`_CrcMcapWriter`)."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _CrcMcapWriter}


def output_form(path: str | os.PathLike, storage: str | None = None) -> tuple[Path, str, bool]:
    """``(path, storage, single_file)`` for an output path: ``.mcap``/``.db3`` name a single file of that
    storage, anything else a rosbag2 directory (``storage`` default ``"mcap"``)."""
    path = Path(path)
    by_suffix = {suffix: name for name, suffix in FILE_SUFFIX.items()}.get(path.suffix)
    if by_suffix is not None:
        if storage is not None and storage != by_suffix:
            raise BagError(f"output {path} ends in {path.suffix!r}, a {by_suffix} file, but storage={storage!r} "
                           f"was asked; name it *{FILE_SUFFIX[storage]} or a directory")
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
            built = bag_dir / f"{self.path.stem}{FILE_SUFFIX[self.storage]}" if self.single_file else bag_dir
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


def write_bag(path: str | os.PathLike, messages: Iterable[tuple[str, Any, int]], *, storage: str | None = None,
              force: bool = False) -> Path:
    """Write ``(topic, msg, time_ns)`` triples as a new bag at ``path`` (atomic; see :class:`BagWriter`)."""
    with BagWriter(path, storage=storage, force=force) as writer:
        for topic, msg, time_ns in messages:
            writer.write(topic, msg, time_ns)
    return Path(path)


def _is_gen3d_bag(path: Path) -> bool:
    """Whether the bag at ``path`` carries the gen3d_ros marker in its custom_data (False when unreadable)."""
    try:
        return bag_custom_data(path).get("generator", "").startswith(outputs.MARKER_WORD)
    except (OSError, BagError):
        return False


outputs.register_marker_reader("bag", _is_gen3d_bag)
