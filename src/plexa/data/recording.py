"""Recordings of plexa messages in MCAP files: how each message is stored, written and read.

One MCAP channel per recorded output port (``camera.frames``); every message keeps the
link's sequence number (MCAP ``sequence``, its low 32 bits), the time its producer sent it
(``publish_time``, ns since the Unix epoch) and the time the recorder took it
(``log_time``). A message is stored in one of four encodings, each declared by the channel's
``message_encoding`` and described in the file by its schema:

``plexa.ndarray``
    a numpy array with a plain dtype: a little-endian descriptor, then the raw bytes::

        u16 data_offset   where the array bytes start, from the message start
        u8  ndim
        u8  order         b'C' (row-major; the only order written)
        8s  dtype         numpy's dtype.str, NUL-padded: '<u2', '|u1', '<f4', ...
        u64 shape[ndim]
        zero padding up to data_offset (the data starts 64-byte aligned in the file)
        prod(shape) * itemsize bytes of data

``cdr`` with schema ``foxglove_msgs/msg/RawImage`` (``ros2msg``)
    2-D uint8 / uint16 and (h, w, 3 | 4) uint8 images, when the link asks for Foxglove: the
    ROS 2 encoding that Foxglove opens as an image (``mono8``, ``mono16``, ``rgb8``, ``rgba8``).

``msgpack``
    plain data (None, bool, int, float, str, bytes, list, dict with str keys) as MessagePack;
    numpy arrays inside it are extension type 1 holding a ``plexa.ndarray`` message.

``plexa.pickle``
    anything else, as a pickle (protocol 5, buffers in-band). The reader never unpickles it
    unless asked (``open(path, unpickle=True)``): a pickle runs code when loaded.
"""

from __future__ import annotations

import functools
import os
import pickle
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import numpy as np

from plexa.data.mcap import Compression, McapWriter
from plexa.data.mcap_reader import ChannelRecord, McapFile
from plexa.errors import RecordingError

__all__ = [
    "ARRAY",
    "MSGPACK",
    "PICKLE",
    "RAWIMAGE",
    "ChannelInfo",
    "Compression",
    "Message",
    "Pickled",
    "Recording",
    "RecordingWriter",
    "open_recording",
]

ARRAY = "plexa.ndarray"
MSGPACK = "msgpack"
PICKLE = "plexa.pickle"
RAWIMAGE = "foxglove_msgs/msg/RawImage"
_ALIGN = 64
_DESC = struct.Struct("<HBc8s")
_EXT_ARRAY = 1

_ARRAY_SCHEMA = __doc__.split("``plexa.ndarray``")[1].split("``cdr``")[0].strip().encode()
_MSGPACK_SCHEMA = (
    b"MessagePack (msgpack.org) of plain data. Extension type 1 holds a numpy array laid out "
    b"as a plexa.ndarray message:\n\n" + _ARRAY_SCHEMA
)
_PICKLE_SCHEMA = (
    b"A Python pickle (protocol 5, buffers in-band). Loading a pickle runs code: "
    b"plexa.recording.open(path, unpickle=True) only if you trust the file."
)
_RAWIMAGE_SCHEMA = b"""builtin_interfaces/Time timestamp
string frame_id
uint32 width
uint32 height
string encoding
uint32 step
uint8[] data
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
_IMAGE_ENCODINGS = {
    ("|u1", 1): "mono8",
    ("<u2", 1): "mono16",
    ("|u1", 3): "rgb8",
    ("|u1", 4): "rgba8",
}
_IMAGE_DTYPES = {
    "mono8": ("|u1", 1),
    "mono16": ("<u2", 1),
    "rgb8": ("|u1", 3),
    "rgba8": ("|u1", 4),
    "8UC1": ("|u1", 1),
    "16UC1": ("<u2", 1),
}
_SCHEMAS = {
    ARRAY: (ARRAY, "plexa", _ARRAY_SCHEMA),
    MSGPACK: ("plexa.msgpack", "plexa", _MSGPACK_SCHEMA),
    PICKLE: (PICKLE, "plexa", _PICKLE_SCHEMA),
    RAWIMAGE: (RAWIMAGE, "ros2msg", _RAWIMAGE_SCHEMA),
}


# ----- encoding --------------------------------------------------------------------------------
def _array_head(arr: np.ndarray[Any, Any], data_at: int | None = None) -> bytes:
    """The ``plexa.ndarray`` descriptor of ``arr``; its data starts ``data_at`` bytes in
    (default: right after the descriptor)."""
    fixed = _DESC.size + 8 * arr.ndim
    return _head(arr.shape, arr.dtype.str, fixed if data_at is None else data_at)


@functools.lru_cache(maxsize=256)
def _head(shape: tuple[int, ...], code: str, at: int) -> bytes:
    """The descriptor bytes (cached: a stream of frames has a few layouts)."""
    fixed = _DESC.size + 8 * len(shape)
    return (
        _DESC.pack(at, len(shape), b"C", code.encode())
        + struct.pack(f"<{len(shape)}Q", *shape)
        + bytes(at - fixed)
    )


def _array_bytes(arr: np.ndarray[Any, Any]) -> memoryview:
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return memoryview(arr).cast("B") if arr.size else memoryview(b"")  # type: ignore[arg-type]


_PLAIN_KINDS = frozenset("biufcmM")


def _plain_array(obj: object) -> bool:
    return type(obj) is np.ndarray and obj.dtype.kind in _PLAIN_KINDS


def _is_plain(obj: object, depth: int = 0) -> bool:
    """True when MessagePack holds ``obj`` exactly (same types back, no tuples or subclasses)."""
    kind = type(obj)
    if obj is None or kind in (bool, float, str, bytes):
        return True
    if kind is int:
        return -(2**63) <= obj < 2**64  # type: ignore[operator]
    if depth > 32:
        return False
    if kind is list:
        return all(_is_plain(x, depth + 1) for x in obj)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(k) is str and _is_plain(v, depth + 1)
            for k, v in obj.items()  # type: ignore[attr-defined]
        )
    return _plain_array(obj)


def _msgpack_hook(obj: Any) -> Any:
    if type(obj) is np.ndarray:
        return msgspec.msgpack.Ext(_EXT_ARRAY, _array_head(obj) + bytes(_array_bytes(obj)))
    raise NotImplementedError(type(obj).__name__)


_packer = msgspec.msgpack.Encoder(enc_hook=_msgpack_hook)


def image_encoding(obj: object) -> str | None:
    """The RawImage encoding Foxglove shows ``obj`` with, or None if it is no such image."""
    if not _plain_array(obj):
        return None
    arr: np.ndarray[Any, Any] = obj  # type: ignore[assignment]
    if arr.ndim == 2:
        channels = 1
    elif arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        channels = arr.shape[2]
    else:
        return None
    return _IMAGE_ENCODINGS.get((arr.dtype.str, channels))


def _cdr_string(text: str, at: int) -> bytes:
    raw = text.encode() + b"\0"
    return bytes(-at % 4) + struct.pack("<I", len(raw)) + raw


def _rawimage_head(arr: np.ndarray[Any, Any], encoding: str, t_ns: int, frame: str) -> bytes:
    """A RawImage message in CDR (little-endian), up to and including the data's length."""
    height, width = arr.shape[:2]
    out = bytearray(b"\x00\x01\x00\x00")
    out += struct.pack("<iI", t_ns // 10**9, t_ns % 10**9)
    out += _cdr_string(frame, len(out) - 4)
    out += bytes(-(len(out) - 4) % 4) + struct.pack("<II", width, height)
    out += _cdr_string(encoding, len(out) - 4)
    out += bytes(-(len(out) - 4) % 4)
    step = width * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    out += struct.pack("<II", step, arr.nbytes)
    return bytes(out)


# ----- writing ---------------------------------------------------------------------------------
class RecordingWriter:
    """Writes plexa messages to an MCAP file, one channel per topic and encoding.

    ``write(topic, obj, sequence=, publish_ns=)`` picks the encoding (see the module doc);
    a topic listed in ``foxglove`` stores images as Foxglove RawImage. Channels are
    registered on their first message.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = 4 * 2**20,
        compression: Compression | str = Compression.NONE,
        foxglove: Iterable[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.file = McapWriter(
            path,
            chunk_size=chunk_size,
            compression=Compression(compression),
            library="plexa",
        )
        self.foxglove = set(foxglove)
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        if metadata:
            self.file.add_metadata("plexa", metadata)

    @property
    def path(self) -> str:
        """Where the file is."""
        return self.file.path

    def _channel(self, topic: str, kind: str) -> int:
        key = (topic, kind)
        cid = self._channels.get(key)
        if cid is None:
            sid = self._schemas.get(kind)
            if sid is None:
                sid = self._schemas[kind] = self.file.add_schema(*_SCHEMAS[kind])
            encoding = "cdr" if kind == RAWIMAGE else kind
            cid = self._channels[key] = self.file.add_channel(topic, encoding, sid)
        return cid

    def write(
        self, topic: str, obj: object, *, sequence: int, publish_ns: int, log_ns: int = 0
    ) -> int:
        """Append ``obj`` as a message of ``topic``; returns the bytes it took.

        Raises :class:`RecordingError` when the file cannot be written (a full disk, say).
        """
        log_ns = log_ns or time.time_ns()
        data: memoryview | None = None
        if type(obj) is np.ndarray and obj.dtype.kind in _PLAIN_KINDS:
            encoding = image_encoding(obj) if topic in self.foxglove else None
            data = _array_bytes(obj)
            if encoding is not None:
                cid = self._channel(topic, RAWIMAGE)
                head = _rawimage_head(obj, encoding, publish_ns, topic)
            else:
                cid = self._channel(topic, ARRAY)
                fixed = _DESC.size + 8 * obj.ndim
                at = fixed + (
                    -self.file.message_offset(fixed, fixed + data.nbytes + _ALIGN - 1) % _ALIGN
                )
                head = _head(obj.shape, obj.dtype.str, at)
        elif _is_plain(obj):
            cid = self._channel(topic, MSGPACK)
            head = _packer.encode(obj)
        else:
            cid = self._channel(topic, PICKLE)
            head = pickle.dumps(obj, protocol=5)
        self.file.add_message(cid, sequence, log_ns, publish_ns, head, data)
        return len(head) + (0 if data is None else data.nbytes)

    def flush(self) -> None:
        """Write the open chunk now."""
        self.file.flush()

    def close(self) -> None:
        """Finish the file (summary and footer)."""
        self.file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----- reading ---------------------------------------------------------------------------------
class Message(NamedTuple):
    """One recorded message."""

    channel: str
    """The topic: the output port it came from, ``actor.port``."""
    time: int
    """When its producer sent it, ns since the Unix epoch."""
    obj: Any
    """The message: arrays are read-only views of the file when it is uncompressed."""
    sequence: int
    """The link's sequence number (its low 32 bits)."""
    log_time: int
    """When the recorder took it, ns since the Unix epoch."""


@dataclass(frozen=True)
class Pickled:
    """A pickled message, not loaded: call :meth:`load` if you trust the file."""

    data: bytes

    def load(self) -> Any:
        """Unpickle it (this runs whatever code the pickle names)."""
        return pickle.loads(self.data)


@dataclass(frozen=True)
class ChannelInfo:
    """What ``plexa info`` shows about one topic."""

    topic: str
    encodings: tuple[str, ...]
    messages: int
    bytes: int
    first_ns: int
    last_ns: int

    @property
    def duration_s(self) -> float:
        """Seconds from its first message to its last."""
        return (self.last_ns - self.first_ns) / 1e9

    @property
    def rate_hz(self) -> float:
        """Messages per second over its duration."""
        return (self.messages - 1) / self.duration_s if self.duration_s > 0 else 0.0


def _decode_array(data: memoryview) -> np.ndarray[Any, Any]:
    at, ndim, _order, code = _DESC.unpack_from(data)
    shape = struct.unpack_from(f"<{ndim}Q", data, _DESC.size)
    dtype = np.dtype(code.rstrip(b"\0").decode())
    count = 1
    for dim in shape:
        count *= dim
    return np.frombuffer(data, dtype, count, at).reshape(shape)


def _decode_rawimage(data: memoryview) -> np.ndarray[Any, Any]:
    at = 4 + 8
    (n,) = struct.unpack_from("<I", data, at)
    at += 4 + n
    at += -(at - 4) % 4
    width, height = struct.unpack_from("<II", data, at)
    at += 8
    (n,) = struct.unpack_from("<I", data, at)
    encoding = bytes(data[at + 4 : at + 3 + n]).decode()
    at += 4 + n
    at += -(at - 4) % 4
    step, size = struct.unpack_from("<II", data, at)
    at += 8
    code, channels = _IMAGE_DTYPES.get(encoding, ("|u1", 0))
    if not channels:
        return np.frombuffer(data, np.uint8, size, at)
    dtype = np.dtype(code)
    rows = np.frombuffer(data, np.uint8, size, at).reshape(height, step)
    image = rows[:, : width * channels * dtype.itemsize].view(dtype)
    return image.reshape(height, width) if channels == 1 else image.reshape(height, width, channels)


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_ARRAY:
        return _decode_array(data)
    raise RecordingError(f"unknown MessagePack extension type {code}")


class Recording:
    """An MCAP recording opened for reading: iterate it for :class:`Message` tuples.

    >>> with plexa.recording.open("run.mcap") as rec:      # doctest: +SKIP
    ...     for msg in rec.messages(["camera.frames"]):
    ...         print(msg.sequence, msg.obj.shape)

    Arrays in uncompressed files are read-only views of the mapped file (no copy); they
    keep the mapping alive, so ``.copy()`` what you keep past the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, unpickle: bool = False) -> None:
        self.file = McapFile(path)
        self.unpickle = unpickle
        self._unpacker = msgspec.msgpack.Decoder(ext_hook=_ext_hook)

    @property
    def complete(self) -> bool:
        """False when the writer died before finishing the file (what it wrote is read)."""
        return self.file.complete

    @property
    def metadata(self) -> dict[str, dict[str, str]]:
        """The file's metadata records by name (``plexa``: the run that made it)."""
        return self.file.metadata

    @property
    def topics(self) -> list[str]:
        """Every recorded topic, in the order they first appeared."""
        return list(dict.fromkeys(c.topic for c in self.file.channels.values()))

    def _decode(self, channel: ChannelRecord, data: memoryview) -> Any:
        encoding = channel.encoding
        if encoding == ARRAY:
            return _decode_array(data)
        if encoding == "cdr":
            return _decode_rawimage(data)
        if encoding == MSGPACK:
            return self._unpacker.decode(data)
        if encoding == PICKLE:
            return pickle.loads(data) if self.unpickle else Pickled(bytes(data))
        return bytes(data)

    def messages(
        self,
        topics: Iterable[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Message]:
        """Messages in recorded order, optionally of some topics and within a time range
        (``time``, inclusive)."""
        wanted = None if topics is None else set(topics)
        unknown = set() if wanted is None else wanted - set(self.topics)
        if unknown:
            raise RecordingError(
                f"{self.file.path} has no channel {', '.join(sorted(unknown))} "
                f"(channels: {', '.join(self.topics) or 'none'})"
            )
        channels = self.file.channels
        for cid, seq, log_time, pub_time, data in self.file.messages():
            channel = channels.get(cid)
            if channel is None or (wanted is not None and channel.topic not in wanted):
                continue
            if (start_ns is not None and pub_time < start_ns) or (
                end_ns is not None and pub_time > end_ns
            ):
                continue
            yield Message(channel.topic, pub_time, self._decode(channel, data), seq, log_time)

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    def info(self) -> list[ChannelInfo]:
        """Per topic: encodings, messages, bytes and time range (a scan of the file)."""
        stats: dict[str, list[Any]] = {}
        for cid, _seq, _log, pub_time, data in self.file.messages():
            channel = self.file.channels.get(cid)
            if channel is None:
                continue
            entry = stats.setdefault(channel.topic, [set(), 0, 0, pub_time, pub_time])
            entry[0].add(self._schema_name(channel))
            entry[1] += 1
            entry[2] += data.nbytes
            entry[3] = min(entry[3], pub_time)
            entry[4] = max(entry[4], pub_time)
        return [
            ChannelInfo(topic, tuple(sorted(e[0])), e[1], e[2], e[3], e[4])
            for topic, e in stats.items()
        ]

    def _schema_name(self, channel: ChannelRecord) -> str:
        schema = self.file.schemas.get(channel.schema_id)
        return schema.name if schema is not None else channel.encoding

    def close(self) -> None:
        """Release the file (the mapping stays while arrays read from it are alive)."""
        self.file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recording(path: str | os.PathLike[str], *, unpickle: bool = False) -> Recording:
    """Open the MCAP recording at ``path`` (``plexa.recording.open``)."""
    return Recording(path, unpickle=unpickle)
