"""Reading MCAP files: mapped into memory, scanned record by record (see :mod:`.mcap`).

Messages of uncompressed chunks are views of the mapping (zero-copy); a compressed chunk is
decompressed when its messages are read. A file without its footer (its writer died) is
read up to its last complete record.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from plexa.data.mcap import (
    _CHUNK_FIXED,
    _MSG_BODY,
    _REC,
    CHANNEL,
    CHUNK,
    DATA_END,
    HEADER,
    MAGIC,
    MESSAGE,
    METADATA,
    SCHEMA,
)
from plexa.errors import RecordingError

__all__ = ["ChannelRecord", "McapFile", "SchemaRecord"]


@dataclass(frozen=True)
class SchemaRecord:
    """A schema as the file declares it."""

    id: int
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class ChannelRecord:
    """A channel as the file declares it."""

    id: int
    schema_id: int
    topic: str
    encoding: str
    metadata: dict[str, str]


def _read_string(view: memoryview, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", view, at)
    return bytes(view[at + 4 : at + 4 + n]).decode(), at + 4 + n


def _read_map(view: memoryview, at: int) -> tuple[dict[str, str], int]:
    (n,) = struct.unpack_from("<I", view, at)
    end = at + 4 + n
    at += 4
    out = {}
    while at < end:
        key, at = _read_string(view, at)
        value, at = _read_string(view, at)
        out[key] = value
    return out, end


class McapFile:
    """An MCAP file mapped into memory and scanned once, record by record.

    The scan stops at the footer or at the first record that runs past the end of the file
    (what a killed writer leaves): ``complete`` tells which.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(MAGIC) or fh.read(len(MAGIC)) != MAGIC:
                raise RecordingError(f"{self.path} is not an MCAP file")
            self._map: mmap.mmap | None = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.view = memoryview(self._map)
        self.size = size
        self.schemas: dict[int, SchemaRecord] = {}
        self.channels: dict[int, ChannelRecord] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.chunks: list[tuple[int, int]] = []
        """(offset, length) of every complete chunk record, in file order."""
        self.loose: list[int] = []
        """Offsets of message records outside chunks."""
        self.complete = False
        self.library = ""
        self._scan()

    def _scan(self) -> None:
        view, size = self.view, self.size
        at = len(MAGIC)
        while at + _REC.size <= size:
            opcode, length = _REC.unpack_from(view, at)
            body = at + _REC.size
            if body + length > size:
                break  # torn: the writer died while writing this record
            if opcode == SCHEMA:
                (sid,) = struct.unpack_from("<H", view, body)
                name, p = _read_string(view, body + 2)
                enc, p = _read_string(view, p)
                (n,) = struct.unpack_from("<I", view, p)
                self.schemas[sid] = SchemaRecord(sid, name, enc, bytes(view[p + 4 : p + 4 + n]))
            elif opcode == CHANNEL:
                cid, sid = struct.unpack_from("<HH", view, body)
                topic, p = _read_string(view, body + 4)
                enc, p = _read_string(view, p)
                meta, p = _read_map(view, p)
                self.channels[cid] = ChannelRecord(cid, sid, topic, enc, meta)
            elif opcode == CHUNK:
                self.chunks.append((body, length))
            elif opcode == MESSAGE:
                self.loose.append(body)
            elif opcode == METADATA:
                name, p = _read_string(view, body)
                self.metadata[name], _ = _read_map(view, p)
            elif opcode == HEADER:
                _, p = _read_string(view, body)
                self.library, _ = _read_string(view, p)
            elif opcode == DATA_END:
                self.complete = True
                break
            elif opcode == 0 or opcode > DATA_END:
                break  # garbage (a torn header): nothing after it can be trusted
            at = body + length

    def messages(self) -> Iterator[tuple[int, int, int, int, memoryview]]:
        """Every message in file order: ``(channel, sequence, log_time, publish_time, data)``;
        ``data`` is a view of the file for uncompressed chunks."""
        for body in self.loose:
            yield self._message(self.view, body, self.view)
        for body, _length in self.chunks:
            records = self._chunk_records(body)
            with contextlib.suppress(struct.error):
                at = 0
                end = len(records)
                while at + _REC.size <= end:
                    opcode, length = _REC.unpack_from(records, at)
                    if at + _REC.size + length > end:
                        break
                    if opcode == MESSAGE:  # (plexa writes schemas and channels outside)
                        yield self._message(records, at + _REC.size, records, length)
                    at += _REC.size + length

    @staticmethod
    def _message(
        view: memoryview, body: int, base: memoryview, length: int | None = None
    ) -> tuple[int, int, int, int, memoryview]:
        if length is None:
            (length,) = struct.unpack_from("<Q", view, body - 8)
        cid, seq, log_time, pub_time = struct.unpack_from("<HIQQ", view, body)
        return cid, seq, log_time, pub_time, base[body + _MSG_BODY : body + length]

    def _chunk_records(self, body: int) -> memoryview:
        view = self.view
        _start, _end, usize, _crc = _CHUNK_FIXED.unpack_from(view, body)
        name, p = _read_string(view, body + _CHUNK_FIXED.size)
        (n,) = struct.unpack_from("<Q", view, p)
        data = view[p + 8 : p + 8 + n]
        if not name:
            return data
        if name == "zstd":
            import zstandard

            return memoryview(zstandard.ZstdDecompressor().decompress(data, max_output_size=usize))
        if name == "lz4":
            import lz4.frame

            return memoryview(lz4.frame.decompress(data))
        raise RecordingError(f"{self.path}: unknown chunk compression {name!r}")

    def close(self) -> None:
        """Unmap the file (once no array read from it is alive)."""
        self.view.release()
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
