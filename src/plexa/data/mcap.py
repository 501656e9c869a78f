"""The MCAP container format, written and scanned by plexa itself (https://mcap.dev/spec).

Why not the ``mcap`` package's writer: it copies each message two or three times through
``BytesIO`` buffers and CRCs every chunk (1.7 GB/s here, as slow as the page cache), puts
schemas and channels inside chunks (a crash before the first chunk loses them), and its
readers copy every message. Here each message is copied once, into the open chunk; a chunk
and its message indexes go out with one ``writev``; schemas, channels and metadata are
written outside chunks the moment they are registered; and the reader maps the file, so a
message in an uncompressed chunk is a view of the mapping. ``mcap`` (the package) reads
these files, and the tests check that it does.

Crash safety: everything a finished ``writev`` wrote survives ``kill -9`` (the page cache
keeps it). A file without its footer is scanned record by record up to the last complete
one; a torn chunk at the end is skipped.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from plexa.errors import RecordingError

__all__ = ["MAGIC", "Compression", "McapWriter"]

MAGIC = b"\x89MCAP0\r\n"
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK, MESSAGE_INDEX, CHUNK_INDEX = range(1, 9)
STATISTICS, METADATA, METADATA_INDEX, SUMMARY_OFFSET, DATA_END = 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
_REC = struct.Struct("<BQ")
_MSG = struct.Struct("<BQHIQQ")
"""A message record's head: opcode, length, channel, sequence, log time, publish time."""
_MSG_BODY = 22
_CHUNK_FIXED = struct.Struct("<QQQI")
_CHUNK_HEAD = struct.Struct("<BQQQQIIQ")
"""An uncompressed chunk's head: opcode, length, start, end, size, crc, b"" (its length 0),
the records' length."""
_ONE_INDEX = struct.Struct("<BQHIQQ")
"""A message index of one message: opcode, length, channel, 16, log time, offset 0."""
_ONE_CHUNK_INDEX = struct.Struct("<BQQQQQIHQQIQQ")
"""The chunk index of an uncompressed chunk of one channel: opcode, length, start, end,
offset, length, 10 (its index offsets' length), channel, index offset, index length,
b"" (its length 0), stored size, size."""


class Compression(enum.StrEnum):
    """How chunks are compressed."""

    NONE = "none"
    """Not at all: readers get array views straight into the file."""
    LZ4 = "lz4"
    """LZ4 frames (needs the ``lz4`` package)."""
    ZSTD = "zstd"
    """Zstandard (needs the ``zstandard`` package)."""


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<I", len(raw)) + raw


def _map(entries: dict[str, str]) -> bytes:
    body = b"".join(_string(k) + _string(v) for k, v in entries.items())
    return struct.pack("<I", len(body)) + body


def _record(opcode: int, body: bytes) -> bytes:
    return _REC.pack(opcode, len(body)) + body


def _chunk_index(
    start_t: int,
    end_t: int,
    offset: int,
    length: int,
    index_offsets: dict[int, int],
    index_length: int,
    compression: str,
    stored: int,
    size: int,
) -> bytes:
    offsets = b"".join(struct.pack("<HQ", c, o) for c, o in index_offsets.items())
    return _record(
        CHUNK_INDEX,
        struct.pack("<QQQQI", start_t, end_t, offset, length, len(offsets))
        + offsets
        + struct.pack("<Q", index_length)
        + _string(compression)
        + struct.pack("<QQ", stored, size),
    )


def _compressor(compression: Compression) -> Any:
    try:
        if compression is Compression.ZSTD:
            import zstandard

            return zstandard.ZstdCompressor(level=1).compress
        if compression is Compression.LZ4:
            import lz4.frame

            return lz4.frame.compress
    except ImportError as exc:
        raise RecordingError(
            f"{compression.value} compression needs the {exc.name!r} package "
            "(pip install 'plexa[record]')"
        ) from exc
    return None


@dataclass
class _Chunk:
    """The chunk being filled: its records, message indexes and time range."""

    buf: bytearray = field(default_factory=bytearray)
    size: int = 0
    start: int = 0
    end: int = 0
    index: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


class McapWriter:
    """Appends records to an MCAP file: schemas and channels, then messages in chunks.

    ``close`` writes the summary (schemas, channels, statistics, chunk and metadata
    indexes) and the footer. Any ``OSError`` while writing (a full disk, say) truncates
    the file back to its last complete record and raises :class:`RecordingError`; the file
    stays readable and ``close`` still tries to finish it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = 4 * 2**20,
        compression: Compression = Compression.NONE,
        crc: bool = False,
        library: str = "plexa",
    ) -> None:
        self.path = os.fspath(path)
        self.chunk_size = chunk_size
        self.compression = compression
        self._compress = _compressor(compression)
        self.crc = crc
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.pos = 0
        self.failed: RecordingError | None = None
        self.closed = False
        self._chunk = _Chunk(bytearray(chunk_size + 2**20))
        self._schemas: list[bytes] = []
        self._channels: list[bytes] = []
        self._chunk_indexes: list[bytes] = []
        """Per chunk: start, end, offset, length, index offsets, index length, compression,
        stored and uncompressed size (written as Chunk Index records by :meth:`close`)."""
        self._direct_size = chunk_size // 8 if self._compress is None else 2**62
        self._metadata_indexes: list[bytes] = []
        self._counts: dict[int, int] = {}
        self.messages = 0
        self.message_bytes = 0
        self.chunks = 0
        self._first = 0
        self._last = 0
        self._append([MAGIC, _record(HEADER, _string("") + _string(library))])

    # ----- records outside chunks ---------------------------------------------------------
    def add_schema(self, name: str, encoding: str, data: bytes) -> int:
        """Register a schema; returns its id (from 1)."""
        sid = len(self._schemas) + 1
        rec = _record(
            SCHEMA,
            struct.pack("<H", sid)
            + _string(name)
            + _string(encoding)
            + struct.pack("<I", len(data))
            + data,
        )
        self._outside(rec)
        self._schemas.append(rec)
        return sid

    def add_channel(
        self, topic: str, encoding: str, schema_id: int, metadata: dict[str, str] | None = None
    ) -> int:
        """Register a channel; returns its id (from 1)."""
        cid = len(self._channels) + 1
        rec = _record(
            CHANNEL,
            struct.pack("<HH", cid, schema_id)
            + _string(topic)
            + _string(encoding)
            + _map(metadata or {}),
        )
        self._outside(rec)
        self._channels.append(rec)
        self._counts[cid] = 0
        return cid

    def add_metadata(self, name: str, entries: dict[str, str]) -> None:
        """Write a metadata record (key-value strings about the whole file)."""
        rec = _record(METADATA, _string(name) + _map(entries))
        self._outside(rec)
        offset = self.pos - len(rec)
        self._metadata_indexes.append(
            _record(METADATA_INDEX, struct.pack("<QQ", offset, len(rec)) + _string(name))
        )

    def _outside(self, rec: bytes) -> None:
        """Write ``rec`` between chunks: the open chunk is finished first, so that its
        position in the file is known while it fills (see :meth:`message_offset`)."""
        self.flush()
        self._append([rec])

    # ----- messages ------------------------------------------------------------------------
    def message_offset(self, head: int, size: int) -> int:
        """The file offset at which the data of a ``size``-byte message will start after
        its first ``head`` bytes (exact for uncompressed chunks): for aligning array data.

        Call it right before :meth:`add_message` of that message: a message that will get a
        chunk of its own has the open chunk written first, here."""
        if self._compress is not None:
            return self._chunk.size + _MSG.size + head
        if size >= self._direct_size:
            self.flush()
        return self.pos + _CHUNK_HEAD.size + self._chunk.size + _MSG.size + head

    def add_message(
        self,
        channel: int,
        sequence: int,
        log_time: int,
        publish_time: int,
        head: bytes,
        data: memoryview | None = None,
    ) -> None:
        """Append one message: ``head`` followed by ``data`` (a large buffer, or None).

        Small messages are copied into the open chunk, written when it is full; a large
        one (an eighth of a chunk or more, uncompressed) is written now in a chunk of its
        own, straight from ``data`` (no copy in user space), so the caller's buffer is not
        kept and a crash loses at most the open chunk of small ones."""
        if self.failed is not None:
            raise self.failed
        size = len(head) + (0 if data is None else data.nbytes)
        msg = _MSG.pack(
            MESSAGE, _MSG_BODY + size, channel, sequence & 0xFFFFFFFF, log_time, publish_time
        )
        if size >= self._direct_size:
            self._single(channel, log_time, msg + head, data, _MSG.size + size)
        else:
            chunk = self._chunk
            at = chunk.size
            end = at + _MSG.size + size
            if end > len(chunk.buf):
                chunk.buf.extend(bytes(end - len(chunk.buf)))
            buf = chunk.buf
            mid = at + _MSG.size + len(head)
            buf[at:mid] = msg + head
            if data is not None:
                with memoryview(buf) as view:
                    view[mid:end] = data
            chunk.size = end
            if chunk.index:
                chunk.start = min(chunk.start, log_time)
                chunk.end = max(chunk.end, log_time)
            else:
                chunk.start = chunk.end = log_time
            chunk.index.setdefault(channel, []).append((log_time, at))
        self._counts[channel] += 1
        if not self.messages:
            self._first = log_time
        self._first = min(self._first, log_time)
        self._last = max(self._last, log_time)
        self.messages += 1
        self.message_bytes += size
        if self._chunk.size >= self.chunk_size:
            self.flush()

    def _single(
        self, channel: int, t: int, head: bytes, data: memoryview | None, size: int
    ) -> None:
        """Write a chunk holding one message (``head`` + ``data``, ``size`` bytes) and its
        index with one ``writev``: the per-frame path of a recording."""
        if self._chunk.size:
            self.flush()
        crc = 0
        if self.crc:
            crc = zlib.crc32(head)
            if data is not None:
                crc = zlib.crc32(data, crc)
        start = self.pos
        chunk = _CHUNK_HEAD.pack(
            CHUNK, _CHUNK_HEAD.size - _REC.size + size, t, t, size, crc, 0, size
        )
        length = _CHUNK_HEAD.size + size
        index = _ONE_INDEX.pack(MESSAGE_INDEX, _ONE_INDEX.size - _REC.size, channel, 16, t, 0)
        parts = [chunk + head, index] if data is None else [chunk + head, data, index]
        self._append(parts, length + _ONE_INDEX.size)
        self._chunk_indexes.append(
            _ONE_CHUNK_INDEX.pack(
                CHUNK_INDEX,
                _ONE_CHUNK_INDEX.size - _REC.size,
                t,
                t,
                start,
                length,
                10,
                channel,
                start + length,
                _ONE_INDEX.size,
                0,
                size,
                size,
            )
        )
        self.chunks += 1

    def flush(self) -> None:
        """Write the open chunk, if it holds anything, with its message indexes."""
        chunk = self._chunk
        if not chunk.size or self.failed is not None:
            return
        with memoryview(chunk.buf) as view, view[: chunk.size] as records:
            data: bytes | memoryview = records
            if self._compress is not None:
                data = self._compress(records)
            self._write_chunk([data], chunk.size, chunk.start, chunk.end, chunk.index, records)
        chunk.size = 0
        chunk.index = {}

    def _write_chunk(
        self,
        parts: list[Any],
        size: int,
        start_t: int,
        end_t: int,
        index: dict[int, list[tuple[int, int]]],
        uncompressed: memoryview | None = None,
    ) -> None:
        """Write a chunk record holding ``parts`` (compressed if the file is; ``size``
        bytes of records uncompressed) and its message indexes, with one ``writev``."""
        crc = 0
        if self.crc:
            for part in parts if uncompressed is None else [uncompressed]:
                crc = zlib.crc32(part, crc)
        name = "" if self._compress is None else self.compression.value
        stored = sum(len(p) if isinstance(p, bytes) else memoryview(p).nbytes for p in parts)
        head = (
            _REC.pack(CHUNK, _CHUNK_FIXED.size + 4 + len(name) + 8 + stored)
            + _CHUNK_FIXED.pack(start_t, end_t, size, crc)
            + _string(name)
            + struct.pack("<Q", stored)
        )
        start = self.pos
        length = len(head) + stored
        indexes = []
        offsets = {}
        at = start + length
        for cid, entries in index.items():
            body = b"".join(struct.pack("<QQ", t, o) for t, o in entries)
            rec = _record(MESSAGE_INDEX, struct.pack("<HI", cid, len(body)) + body)
            offsets[cid] = at
            at += len(rec)
            indexes.append(rec)
        self._append([head, *parts, *indexes])
        self._chunk_indexes.append(
            _chunk_index(
                start_t, end_t, start, length, offsets, at - start - length, name, stored, size
            )
        )
        self.chunks += 1

    def _append(self, parts: list[Any], total: int = -1) -> None:
        """Write ``parts`` (``total`` bytes, if the caller knows) at the end of the file, all
        or nothing (a failure truncates)."""
        if self.failed is not None:
            raise self.failed
        start = self.pos
        if total < 0:
            total = sum(len(p) if type(p) is bytes else memoryview(p).nbytes for p in parts)
        try:
            done = os.writev(self._fd, parts)
            if done < total:  # a short write (a signal, a nearly full disk): write the rest
                self._rest(parts, done)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            with contextlib.suppress(OSError):
                os.lseek(self._fd, start, os.SEEK_SET)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            why = "the disk is full" if full else exc.strerror or str(exc)
            self.failed = RecordingError(f"recording {self.path} stopped: {why}", disk_full=full)
            raise self.failed from exc
        self.pos = start + total

    def _rest(self, parts: list[Any], done: int) -> None:
        """Write what a short ``writev`` left of ``parts`` (``done`` bytes went out)."""
        views = [memoryview(p).cast("B") for p in parts]
        try:
            while views:
                while views and done >= views[0].nbytes:
                    done -= views.pop(0).nbytes
                if not views:
                    return
                if done:
                    views[0] = views[0][done:]
                done = os.writev(self._fd, views)
        finally:
            for view in views:
                view.release()

    # ----- the end ---------------------------------------------------------------------------
    def close(self) -> None:
        """Write the open chunk, the summary and the footer, and close the file.

        After a write error the file is closed as it is (readable up to its last chunk)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.failed is None:
                self.flush()
                self._finish()
        except RecordingError:
            pass
        finally:
            os.close(self._fd)

    def _finish(self) -> None:
        self._append([_record(DATA_END, struct.pack("<I", 0))])
        summary_start = self.pos
        counts = b"".join(struct.pack("<HQ", c, n) for c, n in self._counts.items())
        stats = _record(
            STATISTICS,
            struct.pack(
                "<QHIIII",
                self.messages,
                len(self._schemas),
                len(self._channels),
                0,
                len(self._metadata_indexes),
                self.chunks,
            )
            + struct.pack("<QQ", self._first, self._last)
            + struct.pack("<I", len(counts))
            + counts,
        )
        groups = [
            (SCHEMA, self._schemas),
            (CHANNEL, self._channels),
            (STATISTICS, [stats]),
            (CHUNK_INDEX, self._chunk_indexes),
            (METADATA_INDEX, self._metadata_indexes),
        ]
        parts: list[bytes] = []
        offsets: list[bytes] = []
        at = summary_start
        for opcode, records in groups:
            body = b"".join(records)
            if not body:
                continue
            offsets.append(_record(SUMMARY_OFFSET, struct.pack("<BQQ", opcode, at, len(body))))
            parts.append(body)
            at += len(body)
        footer = _record(FOOTER, struct.pack("<QQI", summary_start, at, 0))
        self._append([*parts, *offsets, footer, MAGIC])
