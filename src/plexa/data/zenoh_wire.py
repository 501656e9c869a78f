"""The wire format of cross-host links (:mod:`plexa.data.zenoh_links`): the header every
message starts with, array layouts, and batches, which carry many small messages in one
Zenoh put.

A message is ``HEADER`` (sequence number, send time, array layout key, kind) and its
payload. A batch is ``HEADER(first, 0, count, BATCH)`` and ``count`` entries, each a 4-byte
length and one whole message with its own header: its own sequence number (``first``,
``first + 1``, ...), send time and kind. So the consumer unpacks a batch into the very
messages the producer numbered, and every counter stays per message.

A producer coalesces messages of at most :data:`SMALL` bytes while they come back to back
(less than :data:`BURST_GAP` apart); a message after a pause, or the first one since the
last flush (in an actor: the first of a step or handler call), goes alone, at once. What a
batch holds goes out when it reaches :data:`BATCH_BYTES`, when its first message is
:data:`BATCH_AGE` old at the next put, before a bigger message, before the producer waits
(for room or for input: the runtime flushes at every safe point, so at the end of each
handler call and step) and on close. No timer thread.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from plexa.data import payload as _payload
from plexa.errors import PlexaError

__all__ = [
    "BATCH_AGE",
    "BATCH_BYTES",
    "BURST_GAP",
    "HEADER",
    "SMALL",
    "Batch",
    "learn_layout",
    "unbatch",
]

ARRAY, MSGPACK, PICKLE, SYNC, WAKE, BATCH = range(6)
"""Kinds in the header (SYNC: no payload, the producer's next sequence number; WAKE: a
consumer's own alarm, never sent off its process; BATCH: messages inside, see above)."""
REFUSED = 256
"""A consumer's own mark for a batch it refused (no byte on the wire can say 256)."""
HEADER = struct.Struct("<QQQB")
"""seq, send time (time.time_ns(), or 0), array layout key (a batch: its count), kind."""
ENTRY = struct.Struct("<IQQQB")
"""One message in a batch: its length (header included), then its header."""
LENGTH = struct.Struct("<I")

SMALL = 4096
"""Messages up to this many bytes (header included) may be batched; bigger ones never."""
BATCH_BYTES = 16384
"""A batch goes out once it holds this many bytes."""
BATCH_AGE = 0.001
"""... or once its first message is this old (seconds) when the next one is put."""
BURST_GAP = 0.001
"""A message put less than this after the previous one (and not the first since a flush)
starts a batch; otherwise it goes out alone at once, as a lone message always should."""


class Batch:
    """The messages a producer holds: header placeholder, then entries."""

    __slots__ = ("buf", "count", "first", "since")

    def __init__(self) -> None:
        self.buf = bytearray(HEADER.size)
        self.count = 0
        self.first = 0
        """Sequence number of the first message held."""
        self.since = 0.0
        """When the first message was put (time.monotonic())."""

    def start(self, seq: int, now: float) -> None:
        self.first, self.since = seq, now

    def send(self, put: Callable[[bytes | bytearray], None]) -> None:
        """Put what it holds on the wire (a lone message as itself), and empty it."""
        buf = self.buf
        if self.count == 1:
            put(buf[HEADER.size + LENGTH.size :])
        else:
            HEADER.pack_into(buf, 0, self.first, 0, self.count, BATCH)
            put(buf)  # (Zenoh copies it: the buffer is reused)
        del buf[HEADER.size :]
        self.count = 0


Item = tuple[int, int, int, int, Any]
"""A message as the consumer queues it: seq, send time, layout key, kind, body (for
:data:`REFUSED`: the :class:`Refusal`)."""


class Refusal(NamedTuple):
    """A batch refused: why, and how many messages it plausibly held."""

    messages: int
    """As its header says, if the batch's length allows that many (else 0: unknown)."""
    reason: str


def unbatch(first: int, count: int, body: bytes) -> list[Item] | Refusal:
    """The messages of a batch, each with its own header; or a :class:`Refusal` (the whole
    batch is refused when any part of it is not as a producer writes it)."""
    end = len(body)
    most = (end - HEADER.size) // ENTRY.size
    if not 1 <= count <= most:
        return Refusal(0, f"batch from message {first} refused: {count} messages in {end} bytes")
    items: list[Item] = []
    pos = HEADER.size
    unpack = ENTRY.unpack_from
    try:
        for expected in range(first, first + count):
            size, seq, t_ns, key, kind = unpack(body, pos)
            start = pos + LENGTH.size
            pos = start + size
            if seq != expected or kind >= SYNC or size < HEADER.size or pos > end:
                raise PlexaError(f"entry {expected - first} is malformed")
            items.append((seq, t_ns, key, kind, body[start:pos]))
    except (struct.error, PlexaError) as exc:
        return Refusal(count, f"batch of messages {first}..{first + count - 1} refused: {exc}")
    if pos != end:
        return Refusal(count, f"batch of messages {first}..{first + count - 1} refused: "
                              f"{end - pos} bytes after its last message")  # fmt: skip
    return items


Layout = tuple[tuple[int, ...], np.dtype[Any], int, int]
"""An array message's shape, dtype, data offset and length (all of it, header included)."""
LAYOUTS: dict[int, Layout] = {}
"""Layouts seen, by layout key (the consumer's cache)."""


def learn_layout(key: int, body: bytes) -> Layout:
    """Parse an array descriptor not seen before: its shape, dtype, offset and length."""
    size, ndim = struct.unpack_from("<HI", body, HEADER.size)
    meta_len = 6 + size + 8 * ndim
    meta = body[HEADER.size : HEADER.size + meta_len]
    if _payload.layout_key(meta) != key:
        raise PlexaError("corrupt array descriptor")
    if len(LAYOUTS) > 256:
        LAYOUTS.clear()
    shape, dtype = _payload.parse_meta(meta)
    offset = HEADER.size + meta_len
    length = offset + dtype.itemsize * math.prod(shape)
    found = LAYOUTS[key] = (shape, dtype, offset, length)
    return found
