"""Cross-host links on Zenoh: the same policies, capacity, sequence numbers and counters as
local links (:mod:`plexa.data.links`), between processes on different machines.

One Zenoh key per link, ``plexa/RUN/link/SRC/PORT/DST/PORT``, carries the messages, and
``.../ack`` carries the consumer's position back. Every message starts with a 25-byte header:
sequence number, send time (wall clock, nanoseconds, one message in 8), array layout key and
payload kind. Arrays are written behind it in a reusable buffer, so nothing is concatenated
(a Zenoh attachment would cost as much again as the put). Small messages put back to back
travel several to a Zenoh put, each whole with its own header (:mod:`plexa.data.zenoh_wire`):
one put and one received sample per batch instead of per message.

* ``block``: credits. The producer keeps at most ``capacity`` messages unacknowledged (a
  batch of n messages uses n credits; held ones count, and go out before any wait) and
  waits for acknowledgements otherwise (a safe point). Zenoh's own blocking is not relied on:
  it closes the connection after 5 s of blocking and loses what was queued, silently (see
  ``docs/hosts.md``). While no consumer is subscribed (its host is cut off or restarting),
  ``put`` waits too.
* ``drop_oldest`` / ``latest``: the producer never waits (Zenoh congestion control DROP); the
  consumer's queue keeps ``capacity`` messages and evicts the oldest.

Accounting is the consumer's, as on local links: a sequence number that skips counts the
missing messages as ``dropped`` (drop policies) or ``lost`` (``block``); a producer that has
waited for room for a while sends a *sync* marker behind its messages, so messages lost in a
cut are counted even when nothing else follows them. ``sent = received + dropped + lost``
holds once the consumer has seen the producer's last message or sync.

Payloads: arrays (any dtype without Python objects) as descriptor + raw bytes, received as
read-only arrays over the received bytes (one copy on each side, the least the Zenoh Python
binding allows; :meth:`ZenohOutputPort.loan` writes in place, so nothing else is copied).
Other objects are pickled only on a session authenticated with TLS; without it they travel
as msgpack (plain data), and a pickle from such a peer is never loaded (counted as lost).
"""

from __future__ import annotations

import ctypes
import math
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
import zenoh

from plexa.core.spec import LinkSpec, Policy
from plexa.data import payload as _payload
from plexa.data.counters import HIST_BASE, HIST_BUCKETS, OutputField, Row
from plexa.data.links import SAMPLE_MASK
from plexa.data.zenoh_session import (
    TlsFiles,
    ZenohSettings,
    open_session,
    wait_connected,
)
from plexa.data.zenoh_wire import (
    ARRAY,
    BATCH_AGE,
    BATCH_BYTES,
    BURST_GAP,
    HEADER,
    LENGTH,
    MSGPACK,
    PICKLE,
    SMALL,
    SYNC,
    Batch,
)
from plexa.errors import PayloadError, Timeout, WouldBlock

__all__ = [
    "TlsFiles",
    "ZenohOutputPort",
    "ZenohSettings",
    "link_key",
    "open_session",
    "wait_connected",
]

SYNC_AFTER = 0.2
"""Seconds a producer waits for room before it sends a sync marker (and again after that)."""
_WIDTH = HIST_BASE + HIST_BUCKETS


def link_key(run: str, link: LinkSpec) -> str:
    """The Zenoh key of ``link``'s messages (its acknowledgements: ``+ '/ack'``)."""
    return f"plexa/{run}/link/{link.src}/{link.src_port}/{link.dst}/{link.dst_port}"


def _undeclare(entity: Any) -> None:
    entity.undeclare()


def _row() -> Row:
    return (ctypes.c_int64 * _WIDTH)()


Notify = Callable[[], None]
"""Called on a Zenoh thread when something arrived (a message, or room on a block link)."""


class _Out:
    """One link as its producer holds it."""

    __slots__ = (
        "acked",
        "block",
        "capacity",
        "key",
        "last_sync",
        "listener",
        "matched",
        "publisher",
    )

    def __init__(self, session: zenoh.Session, run: str, link: LinkSpec, port: ZenohOutputPort):
        self.key = link_key(run, link)
        self.block = link.policy is Policy.BLOCK
        self.capacity = link.capacity
        self.acked = -1
        self.matched = False
        self.last_sync = 0.0
        cc = zenoh.CongestionControl.BLOCK if self.block else zenoh.CongestionControl.DROP
        self.publisher = session.declare_publisher(self.key, congestion_control=cc)
        self.listener = self.publisher.declare_matching_listener(port._matching(self))
        status: Any = self.publisher.matching_status  # (the stub says bool: it is not)
        self.matched = bool(status.matching)


class ZenohOutputPort:
    """A cross-host output port: ``put(obj)`` sends to every linked remote input.

    Mirrors :class:`plexa.data.links.OutputPort` (``put``, ``put_nowait``, ``loan``,
    ``sent``). ``idle_wait`` waits for a wake-up (a safe point in an actor); without it the
    port waits on its own event. ``notify`` is called when an acknowledgement arrives.

    With ``batch``, small messages that come back to back are held and sent as one batch:
    whoever puts must then call :meth:`flush` before it goes quiet (the runtime does, at
    every safe point of the actor); waits for room, :meth:`sync` and :meth:`close` flush.
    """

    def __init__(
        self,
        session: zenoh.Session,
        run: str,
        actor: str,
        name: str,
        links: Sequence[LinkSpec],
        *,
        authenticated: bool = False,
        row: Row | None = None,
        idle_wait: Callable[[float], None] | None = None,
        notify: Notify | None = None,
        batch: bool = False,
    ) -> None:
        self.actor = actor
        self.name = name
        self._pickle = authenticated
        self._row = row if row is not None else _row()
        self.sent = int(self._row[OutputField.SENT])
        self._event = threading.Event()
        self._notify = notify
        self._idle_wait = idle_wait or self._own_wait
        self._outs = [_Out(session, run, link, self) for link in links]
        self._blocking = [out for out in self._outs if out.block]
        self._acks = [  # credits on block links; on every link, the answer to a sync
            session.declare_subscriber(out.key + "/ack", self._on_ack(out)) for out in self._outs
        ]
        self._frames: dict[tuple[Any, Any], _Frame] = {}
        self._batching = batch
        self._batch = Batch()
        self._last_put = 0.0
        self._fresh = True
        """No message put since the last flush: the next one is not held (an actor that
        puts one message per step gets one put per message, at no cost for batching)."""

    def _matching(self, out: _Out) -> Callable[[Any], None]:
        def on_matching(status: Any) -> None:
            out.matched = bool(status.matching)
            self._wake()

        return on_matching

    def _on_ack(self, out: _Out) -> Callable[[zenoh.Sample], None]:
        def on_ack(sample: zenoh.Sample) -> None:
            consumed = int.from_bytes(sample.payload.to_bytes(), "little") - 1
            if consumed > out.acked:
                out.acked = consumed
                self._wake()

        return on_ack

    def _wake(self) -> None:
        self._event.set()
        if self._notify is not None:
            self._notify()

    def _own_wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def _room(self) -> bool:
        """True if every ``block`` link has a consumer subscribed and room for one more."""
        last = self.sent - 1
        for out in self._blocking:
            if not out.matched or last - out.acked >= out.capacity:
                return False
        return True

    def _wait_room(self, timeout: float | None) -> None:
        if not self._blocking or self._room():
            return
        self.flush()  # held messages use credits: the consumer must see them to give more
        start = time.monotonic()
        while not self._room():
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                raise Timeout(f"output {self.actor}.{self.name}: no room within {timeout} s")
            for out in self._blocking:  # lost messages never get acknowledged: tell the
                if out.matched and now - max(start, out.last_sync) > SYNC_AFTER:  # consumer
                    out.last_sync = now  # where we are, so it counts them and answers
                    out.publisher.put(HEADER.pack(self.sent, 0, 0, SYNC))
            left = 0.05 if timeout is None else min(0.05, start + timeout - now)
            self._idle_wait(max(left, 0.0))

    def put(self, obj: object, timeout: float | None = None) -> None:
        """Send ``obj`` to every linked input, waiting for room on ``block`` links."""
        last = self.sent - 1
        for out in self._blocking:  # (inlined _room: this runs once per message)
            if not out.matched or last - out.acked >= out.capacity:
                self._wait_room(timeout)
                break
        if type(obj) is np.ndarray and obj.dtype.kind != "O":
            frame = self._frames.get((obj.shape, obj.dtype)) or self._frame(obj.shape, obj.dtype)
            frame.view[...] = obj  # the one copy on this side
            self._send(frame.buf, frame.key, ARRAY)
        else:
            self._send(*self._encode(obj))

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` now, or raise :class:`WouldBlock` if a ``block`` link is full."""
        if self._blocking and not self._room():
            self.flush()
            raise WouldBlock(f"output {self.actor}.{self.name} is full")
        self._send(*self._encode(obj))

    def _frame(self, shape: tuple[int, ...], dtype: Any) -> _Frame:
        """The reusable buffer (header, descriptor, data) for arrays of one shape and dtype,
        with a writable view of its data; keyed by ``dtype`` as given (hashing an
        ``np.dtype`` costs more than the rest of a send)."""
        found = self._frames.get((shape, dtype))
        if found is None:
            dt = np.dtype(dtype)
            meta = _payload.array_meta(shape, dt)
            offset = HEADER.size + len(meta)
            buf = bytearray(offset + dt.itemsize * math.prod(shape))
            buf[HEADER.size : offset] = meta
            view: npt.NDArray[Any] = np.ndarray(shape, dt, buf, offset)
            if len(self._frames) > 16:
                self._frames.clear()
            found = self._frames[(shape, dtype)] = _Frame(buf, view, _payload.layout_key(meta))
        return found

    def _encode(self, obj: object) -> tuple[bytearray | bytes, int, int]:
        try:
            if type(obj) is np.ndarray and obj.dtype.kind != "O":
                frame = self._frame(obj.shape, obj.dtype)
                np.copyto(frame.view, obj)  # the one copy on this side
                return frame.buf, frame.key, ARRAY
            if self._pickle:
                return HEADER.pack(0, 0, 0, PICKLE) + pickle.dumps(obj, protocol=5), 0, PICKLE
            return HEADER.pack(0, 0, 0, MSGPACK) + msgspec.msgpack.encode(obj), 0, MSGPACK
        except PayloadError as exc:
            raise PayloadError(f"output {self.actor}.{self.name}: {exc}") from exc
        except Exception as exc:
            how = "pickled" if self._pickle else "sent as msgpack without TLS (plain data only)"
            raise PayloadError(
                f"output {self.actor}.{self.name}: {type(obj).__name__} cannot be {how}: {exc}"
            ) from exc

    def _send(self, buf: bytearray | bytes, key: int, kind: int) -> None:
        """Number the message, count it as sent, and send it on every link, or hold it in
        the batch (see :mod:`plexa.data.zenoh_wire` for when a batch goes out).

        The header is written into the payload's first bytes: a Zenoh attachment costs as
        much again as the put itself (measured)."""
        seq = self.sent
        t_ns = 0 if seq & SAMPLE_MASK else time.time_ns()
        if type(buf) is bytearray:
            HEADER.pack_into(buf, 0, seq, t_ns, key, kind)
        else:  # an encoded object: header placeholder already in front
            buf = HEADER.pack(seq, t_ns, key, kind) + buf[HEADER.size :]
        row = self._row
        row[OutputField.SENT] = self.sent = seq + 1
        size = len(buf)
        row[OutputField.BYTES] += size
        batch = self._batch
        if size <= SMALL and self._batching:
            if self._fresh:  # the first since a flush (a safe point): it goes out at once
                self._fresh = False
                self._last_put = time.monotonic()
            else:
                now = time.monotonic()
                if batch.count or now - self._last_put < BURST_GAP:  # back to back: hold
                    if not batch.count:
                        batch.start(seq, now)
                    held = batch.buf
                    held += LENGTH.pack(size)
                    held += buf
                    batch.count += 1
                    self._last_put = now
                    if len(held) >= BATCH_BYTES or now - batch.since >= BATCH_AGE:
                        batch.send(self._put)
                    return
                self._last_put = now
        elif batch.count:  # what it holds goes first
            batch.send(self._put)
        self._put(buf)

    def _put(self, buf: bytearray | bytes) -> None:
        """One Zenoh put on every link (one ZBytes shared by them)."""
        outs = self._outs
        if len(outs) == 1:
            outs[0].publisher.put(buf)
        else:
            data = zenoh.ZBytes(buf)  # one copy for every link
            for out in outs:
                out.publisher.put(data)

    def flush(self) -> None:
        """Send the messages held in the batch now (the runtime calls this at every safe
        point of the actor: a message is never held while its producer waits)."""
        self._fresh = True
        if self._batch.count:
            self._batch.send(self._put)

    def loan(
        self, shape: tuple[int, ...] | list[int] | int, dtype: npt.DTypeLike = np.uint8
    ) -> ZLoan:
        """Write a frame in place; it is sent when the ``with`` block ends (not if it raises).

        The array handed out is reused by the next loan of the same shape and dtype: do not
        keep it (its bytes were copied when it was sent)."""
        dims = (shape,) if type(shape) is int else tuple(shape)  # type: ignore[arg-type]
        return ZLoan(self, self._frames.get((dims, dtype)) or self._frame(dims, dtype))

    def sync(self) -> None:
        """Tell every consumer where this producer is (it then accounts for every message
        sent so far). Called on close; harmless at any time."""
        self.flush()
        for out in self._outs:
            out.publisher.put(HEADER.pack(self.sent, 0, 0, SYNC))

    def close(self, linger: float = 2.0) -> None:
        """Send a last sync and wait up to ``linger`` s until every subscribed consumer has
        answered it (closing a session drops what it has not sent yet: the last messages
        went missing without this); then undeclare the publishers and ack subscribers."""
        try:
            self.sync()
            start = time.monotonic()
            last = self.sent - 1
            while any(out.matched and out.acked < last for out in self._outs):
                now = time.monotonic()
                if now - start > linger:
                    break
                if now - max(start, self._outs[0].last_sync) > SYNC_AFTER:
                    self._outs[0].last_sync = now
                    self.sync()
                self._own_wait(0.01)
        finally:
            for sub in self._acks:
                _undeclare(sub)
            for out in self._outs:
                _undeclare(out.listener)
                _undeclare(out.publisher)
            self._acks, self._outs, self._blocking = [], [], []


class _Frame(NamedTuple):
    buf: bytearray
    view: npt.NDArray[Any]
    key: int


class ZLoan:
    """A frame being written in place (``with port.loan(shape, dtype) as frame``)."""

    __slots__ = ("_frame", "_port")

    def __init__(self, port: ZenohOutputPort, frame: _Frame) -> None:
        self._port, self._frame = port, frame

    def __enter__(self) -> npt.NDArray[Any]:
        port = self._port
        last = port.sent - 1
        for out in port._blocking:  # (inlined _room, as in put)
            if not out.matched or last - out.acked >= out.capacity:
                port._wait_room(None)
                break
        return self._frame.view

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._port._send(self._frame.buf, self._frame.key, ARRAY)
