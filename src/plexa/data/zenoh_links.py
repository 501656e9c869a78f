"""Cross-host links on Zenoh: the same policies, capacity, sequence numbers and counters as
local links (:mod:`plexa.data.links`), between processes on different machines.

One Zenoh key per link, ``plexa/RUN/link/SRC/PORT/DST/PORT``, carries the messages, and
``.../ack`` carries the consumer's position back. Every message starts with a 25-byte header:
sequence number, send time (wall clock, nanoseconds, one message in 8), array layout key and
payload kind. Arrays are written behind it in a reusable buffer, so nothing is concatenated
(a Zenoh attachment would cost as much again as the put).

* ``block``: credits. The producer keeps at most ``capacity`` messages unacknowledged and
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

import collections
import ctypes
import math
import pickle
import struct
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
from plexa.data.counters import HIST_BASE, HIST_BUCKETS, LinkField, OutputField, Row, bucket
from plexa.data.links import EMPTY, SAMPLE_MASK, LinkStatistics
from plexa.data.zenoh_session import (
    TlsFiles,
    ZenohSettings,
    open_session,
    wait_connected,
)
from plexa.errors import PayloadError, PlexaError, Timeout, WouldBlock

__all__ = [
    "TlsFiles",
    "ZenohInputPort",
    "ZenohOutputPort",
    "ZenohSettings",
    "link_key",
    "open_session",
    "wait_connected",
]

ARRAY, MSGPACK, PICKLE, SYNC, WAKE = range(5)
"""Payload kinds in the header (SYNC: no payload, the producer's next sequence number;
WAKE: a consumer's own alarm, never sent off its process)."""
HEADER = struct.Struct("<QQQB")
"""seq, send time (time.time_ns()), array layout key, kind."""
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
        self._wait_room(timeout)
        self._send(*self._encode(obj))

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` now, or raise :class:`WouldBlock` if a ``block`` link is full."""
        if self._blocking and not self._room():
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
        """Number the message, count it as sent, send it on every link (one ZBytes shared).

        The header is written into the payload's first bytes: a Zenoh attachment costs as
        much again as the put itself (measured)."""
        seq = self.sent
        t_ns = 0 if seq & SAMPLE_MASK else time.time_ns()
        if type(buf) is bytearray:
            HEADER.pack_into(buf, 0, seq, t_ns, key, kind)
        else:  # an encoded object: header placeholder already in front
            buf = HEADER.pack(seq, t_ns, key, kind) + buf[HEADER.size :]
        data = zenoh.ZBytes(buf)
        row = self._row
        row[OutputField.SENT] = self.sent = seq + 1
        for out in self._outs:
            out.publisher.put(data)
        row[OutputField.BYTES] += len(buf)

    def loan(
        self, shape: tuple[int, ...] | list[int] | int, dtype: npt.DTypeLike = np.uint8
    ) -> ZLoan:
        """Write a frame in place; it is sent when the ``with`` block ends (not if it raises).

        The array handed out is reused by the next loan of the same shape and dtype: do not
        keep it (its bytes were copied when it was sent)."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        return ZLoan(self, self._frame(dims, dtype))

    def sync(self) -> None:
        """Tell every consumer where this producer is (it then accounts for every message
        sent so far). Called on close; harmless at any time."""
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
        self._port._wait_room(None)
        return self._frame.view

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._port._send(self._frame.buf, self._frame.key, ARRAY)


class _In:
    """One link as its consumer holds it: a queue the Zenoh thread fills, the counters."""

    def __init__(
        self,
        session: zenoh.Session,
        run: str,
        link: LinkSpec,
        row: Row,
        authenticated: bool,
        wake: Callable[[], None],
        pump: bool,
    ) -> None:
        self.link = link
        self.key = link_key(run, link)
        self.policy = link.policy
        self.row = row
        self.expected = int(row[LinkField.CONSUMED])
        self.newest_seen = self.expected
        self.pickle = authenticated
        self.errors = 0
        self.last_error = ""
        self.acked = self.expected
        self.ack_every = max(1, link.capacity // 4)
        # block: credits bound the queue; anything beyond twice that is a broken producer
        limit = link.capacity * 2 + 1 if self.policy is Policy.BLOCK else link.capacity
        self.queue: collections.deque[tuple[int, int, int, int, bytes]] = collections.deque(
            maxlen=limit
        )
        self._wake = wake
        key = link_key(run, link)
        self.acks = session.declare_publisher(
            key + "/ack", congestion_control=zenoh.CongestionControl.BLOCK
        )
        self.credits = self.policy is Policy.BLOCK
        # A Rust-side channel, drained by a thread of ours in batches: a Python callback
        # would make Zenoh's receiving thread wait for the GIL on every sample (measured:
        # 20x fewer 100 B messages/s while the consumer was busy), and stall its keep-alives.
        channel: Any = (
            zenoh.handlers.FifoChannel(limit + 8)  # credits keep it from filling
            if self.policy is Policy.BLOCK
            else zenoh.handlers.RingChannel(link.capacity)  # evicts the oldest: a gap
        )
        self.subscriber = session.declare_subscriber(key, channel)
        self.handler: Any = self.subscriber.handler
        self._pump: threading.Thread | None = None
        if pump:  # else the consumer's own thread takes from the channel (one wake-up less)
            self._pump = threading.Thread(
                target=self._drain, args=(self.handler,), daemon=True, name=f"plexa {key}"
            )
            self._pump.start()

    def _drain(self, handler: Any) -> None:
        """Move samples from Zenoh's channel to the queue, waking the consumer once per
        batch; ends when the subscriber is undeclared (the channel closes)."""
        try:
            while True:
                sample = handler.recv()  # (on the handler: a recv on the subscriber would
                while sample is not None:  # keep undeclare() from another thread out)
                    self._on_sample(sample)
                    sample = handler.try_recv()
                self._wake()
        except zenoh.ZError:  # the channel closed
            return

    def fill(self) -> None:
        """Without a pump thread: move what Zenoh's channel holds to the queue."""
        sample = self.handler.try_recv()
        while sample is not None:
            self._on_sample(sample)
            sample = self.handler.try_recv()

    def block(self) -> None:
        """Without a pump thread: wait in Zenoh's channel for a message (GIL released)."""
        self._on_sample(self.handler.recv())

    def _on_sample(self, sample: zenoh.Sample) -> None:
        body = sample.payload.to_bytes()
        if len(body) < HEADER.size:
            return
        seq, t_ns, key, kind = HEADER.unpack_from(body)
        if kind == WAKE:
            return
        self.queue.append((seq, t_ns, key, kind, body))
        self.newest_seen = max(self.newest_seen, seq + (kind != SYNC))

    def take(self) -> Any:
        """The next message, accounted for and decoded, or :data:`EMPTY`."""
        queue = self.queue
        if not queue and self._pump is None:
            self.fill()
        while queue:
            if self.policy is Policy.LATEST and len(queue) > 1:
                # keep the newest message (and any sync after it); the older ones are
                # counted as dropped through the gap they leave
                newest = [i for i, item in enumerate(queue) if item[3] != SYNC]
                for _ in range(newest[-1] if newest else 0):
                    queue.popleft()
            seq, t_ns, key, kind, body = queue.popleft()
            self._account(seq)
            if kind == SYNC:
                self._ack(force=True)
                continue
            self.expected = seq + 1
            self.row[LinkField.CONSUMED] = seq + 1
            self._ack(force=False)
            if t_ns:
                latency = max(time.time_ns() - t_ns, 0)
                self.row[LinkField.LATENCY_NS] = latency
                self.row[bucket(latency)] += 1
            try:
                return self._decode(key, kind, body)
            except Exception as exc:  # refused or unreadable: counted, never handed on
                self.row[LinkField.LOST] += 1
                self.errors += 1
                self.last_error = f"link {self.link.name}: message {seq} refused: {exc}"
        return EMPTY

    def _account(self, seq: int) -> None:
        """Messages before ``seq`` that never arrived: dropped (drop policies) or lost."""
        missing = seq - self.expected
        if missing > 0:
            field = LinkField.LOST if self.policy is Policy.BLOCK else LinkField.DROPPED
            self.row[field] += missing
            self.expected = seq
            self.row[LinkField.CONSUMED] = seq

    def _ack(self, force: bool) -> None:
        """Tell the producer where we are: every ``capacity/4`` messages on ``block`` links
        (credits), and on every link in answer to a sync."""
        consumed = self.expected
        if force or (self.credits and consumed - self.acked >= self.ack_every):
            self.acked = consumed
            self.acks.put(consumed.to_bytes(8, "little"))

    def _decode(self, key: int, kind: int, body: bytes) -> Any:
        if kind == ARRAY:
            shape, dtype, meta_len = _layouts.get(key) or _learn(key, body)
            return np.frombuffer(body, dtype, offset=HEADER.size + meta_len).reshape(shape)
        if kind == MSGPACK:
            return msgspec.msgpack.decode(memoryview(body)[HEADER.size :])
        if kind == PICKLE:
            if not self.pickle:
                raise PlexaError("a pickle from an unauthenticated peer is never loaded")
            return pickle.loads(memoryview(body)[HEADER.size :])
        raise PlexaError(f"unknown payload kind {kind}")

    def close(self) -> None:
        _undeclare(self.subscriber)
        _undeclare(self.acks)
        if self._pump is not None:
            self._pump.join(5)


_Layout = tuple[tuple[int, ...], np.dtype[Any], int]
_layouts: dict[int, _Layout] = {}


def _learn(key: int, body: bytes) -> _Layout:
    """Parse an array descriptor not seen before: its shape, dtype and length."""
    size, ndim = struct.unpack_from("<HI", body, HEADER.size)
    meta_len = 6 + size + 8 * ndim
    meta = body[HEADER.size : HEADER.size + meta_len]
    if _payload.layout_key(meta) != key:
        raise PlexaError("corrupt array descriptor")
    if len(_layouts) > 256:
        _layouts.clear()
    shape, dtype = _payload.parse_meta(meta)
    found = _layouts[key] = (shape, dtype, meta_len)
    return found


class ZenohInputPort:
    """A cross-host input port fed by one or more links; messages are taken round-robin.

    Mirrors :class:`plexa.data.links.InputPort` (``take``, ``get``, ``get_nowait``,
    ``has_pending``, ``discard``, ``statistics``). ``rows`` maps link names to counter rows
    (the run's shared counters); without them the port keeps private ones. ``notify`` is
    called on a Zenoh thread when a message arrives.
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
        rows: dict[str, Row] | None = None,
        idle_wait: Callable[[float], None] | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.actor = actor
        self.name = name
        self._event = threading.Event()
        self._waiting = False
        self._notify = notify
        self._idle_wait = idle_wait or self._own_wait
        rows = rows or {}
        # one link, nobody else to wake: this thread waits in Zenoh's channel itself
        self._direct = idle_wait is None and notify is None and len(links) == 1
        self._subs = [
            _In(
                session,
                run,
                link,
                rows.get(link.name, _row()),
                authenticated,
                self._wake,
                pump=not self._direct,
            )
            for link in links
        ]
        self._next = 0
        self._alarm = _Alarm(session, self._subs[0].key) if self._direct else None

    def _wake(self) -> None:
        if self._waiting:  # only a consumer about to sleep needs the (costly) signal
            self._event.set()
        if self._notify is not None:
            self._notify()

    def _own_wait(self, timeout: float) -> None:
        self._waiting = True
        if not self.has_pending():  # checked after saying we wait: no wake-up is missed
            self._event.wait(timeout)
        self._waiting = False
        self._event.clear()

    def take(self) -> Any:
        """The next message from any link of this port, or :data:`EMPTY`."""
        subs = self._subs
        n = len(subs)
        for i in range(n):
            obj = subs[(self._next + i) % n].take()
            if obj is not EMPTY:
                self._next = (self._next + i + 1) % n
                return obj
        return EMPTY

    def has_pending(self) -> bool:
        """True when a message (or a sync) waits on some link of this port."""
        if self._direct:
            self._subs[0].fill()
        return any(sub.queue for sub in self._subs)

    def discard(self) -> int:
        """Drop every queued message, counting each as dropped; returns how many."""
        count = 0
        for sub in self._subs:
            if sub._pump is None:
                sub.fill()
            while sub.queue:
                seq, _, _, kind, _ = sub.queue.popleft()
                sub._account(seq)
                if kind != SYNC:
                    sub.row[LinkField.DROPPED] += 1
                    sub.expected = seq + 1
                    sub.row[LinkField.CONSUMED] = seq + 1
                    count += 1
            sub._ack(force=True)
        return count

    def get_nowait(self) -> Any:
        """The next message, or :class:`WouldBlock` if none is queued."""
        obj = self.take()
        if obj is EMPTY:
            raise WouldBlock(f"input {self.actor}.{self.name} is empty")
        return obj

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            obj = self.take()
            if obj is not EMPTY:
                return obj
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"input {self.actor}.{self.name}: nothing within {timeout} s")
            if self._alarm is not None:  # sleep in Zenoh's channel; the alarm ends the nap
                self._alarm.arm(time.monotonic() + min(left, 0.1))
                self._subs[0].block()
            else:
                self._idle_wait(min(left, 0.1))

    def statistics(self) -> dict[str, LinkStatistics]:
        """Per-link counts; ``sent`` is what the producer had sent as far as this consumer
        knows (exact after the producer's last message or sync arrived and was taken)."""
        out = {}
        for sub in self._subs:
            row = sub.row
            consumed = int(row[LinkField.CONSUMED])
            dropped, lost = int(row[LinkField.DROPPED]), int(row[LinkField.LOST])
            out[sub.link.name] = LinkStatistics(
                sent=max(sub.newest_seen, consumed),
                received=consumed - dropped - lost,
                dropped=dropped,
                lost=lost,
            )
        return out

    def errors(self) -> list[str]:
        """The last refusal of each link that refused a message (for logs and status)."""
        return [sub.last_error for sub in self._subs if sub.errors]

    def latency_hist(self, link: str) -> npt.NDArray[np.int64]:
        """The latency histogram of ``link`` (see :func:`plexa.data.counters.percentile`)."""
        for sub in self._subs:
            if sub.link.name == link:
                return np.array(sub.row[HIST_BASE:_WIDTH], np.int64)
        raise KeyError(link)

    def close(self) -> None:
        """Undeclare the subscribers (and acknowledgement publishers)."""
        if self._alarm is not None:
            self._alarm.close()
        for sub in self._subs:
            sub.close()
        self._subs = []


class _Alarm:
    """Ends a consumer's wait in a Zenoh channel at its deadline, with a message only this
    session sees. Deadlines move later without waking the alarm's thread, which then wakes
    at most once per wait slice (0.1 s), never per message."""

    def __init__(self, session: zenoh.Session, key: str) -> None:
        self._session = session
        self._key = key
        self._cond = threading.Condition()
        self._at: float | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, at: float) -> None:
        with self._cond:
            sooner = self._at is None or at < self._at
            self._at = at
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="plexa alarm")
                self._thread.start()
            elif sooner:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._at is None:
                    self._cond.wait()
                    continue
                left = self._at - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._at = None
                self._session.put(
                    self._key,
                    HEADER.pack(0, 0, 0, WAKE),
                    allowed_destination=zenoh.Locality.SESSION_LOCAL,
                )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)
