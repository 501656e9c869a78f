"""The consumer's end of cross-host links (see :mod:`plexa.data.zenoh_links` for the
protocol: header, credits, syncs, accounting; :mod:`plexa.data.zenoh_wire` for batches).

A batch is unpacked into its messages as it arrives, each queued with its own sequence
number, so the counters, acknowledgements, latencies and ``take_stamped`` are per message as
if each had come alone. A batch that is not exactly as a producer writes it is refused
whole: its messages count as lost and the link's :meth:`ZenohInputPort.errors` says why."""

from __future__ import annotations

import collections
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import zenoh

from plexa.core.spec import LinkSpec, Policy
from plexa.data.counters import HIST_BASE, LinkField, Row, bucket
from plexa.data.inputs import EMPTY
from plexa.data.links import LinkStatistics
from plexa.data.zenoh_links import _WIDTH, Notify, _row, _undeclare, link_key
from plexa.data.zenoh_wire import (
    ARRAY,
    BATCH,
    HEADER,
    LAYOUTS,
    MSGPACK,
    PICKLE,
    REFUSED,
    SYNC,
    WAKE,
    Item,
    Refusal,
    learn_layout,
    unbatch,
)
from plexa.errors import PlexaError, Timeout, WouldBlock

__all__ = ["ZenohInputPort"]

_unpack = HEADER.unpack_from


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
        self.queue: collections.deque[Item] = collections.deque(maxlen=limit)
        self._wake = wake
        key = link_key(run, link)
        self.acks = session.declare_publisher(
            key + "/ack", congestion_control=zenoh.CongestionControl.BLOCK
        )
        self.credits = self.policy is Policy.BLOCK
        self.latest = self.policy is Policy.LATEST
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
        seq, t_ns, key, kind = _unpack(body)
        if kind >= WAKE:
            if kind == BATCH:
                self._unbatch(seq, key, body)
                return
            if kind == WAKE:
                return
        self.queue.append((seq, t_ns, key, kind, body))
        end = seq + (kind != SYNC)
        if end > self.newest_seen:
            self.newest_seen = end

    def _unbatch(self, first: int, count: int, body: bytes) -> None:
        """Queue a batch's messages, or one :data:`REFUSED` mark for all of them."""
        items = unbatch(first, count, body)
        if isinstance(items, Refusal):  # counted where it stands in the stream, by take()
            if not items.messages:  # its header is not to be believed: the gap will count
                self.queue.append((-1, 0, 0, REFUSED, items))
                return
            self.queue.append((first, 0, items.messages, REFUSED, items))
            end = first + items.messages
        else:
            self.queue.extend(items)
            end = first + count
        if end > self.newest_seen:
            self.newest_seen = end

    def take(self) -> Any:
        """The next message, accounted for and decoded, or :data:`EMPTY`."""
        queue = self.queue
        if not queue and self._pump is None:
            self.fill()
        while queue:
            if self.latest and len(queue) > 1:
                # keep the newest message (and any sync after it); the older ones are
                # counted as dropped through the gap they leave
                newest = [i for i, item in enumerate(queue) if item[3] < SYNC]
                for _ in range(newest[-1] if newest else 0):
                    queue.popleft()
            seq, t_ns, key, kind, body = queue.popleft()
            if seq != self.expected:
                self._account(seq)
            if kind >= SYNC:  # (one test for both marks: this runs once per message)
                if kind == SYNC:
                    self._ack(force=True)
                    continue
                if kind == REFUSED:
                    self._refused(seq, body)
                    continue
            row = self.row
            self.expected = row[LinkField.CONSUMED] = seq + 1
            if self.credits and seq + 1 - self.acked >= self.ack_every:
                self._ack(force=True)
            if t_ns:
                latency = max(time.time_ns() - t_ns, 0)
                row[LinkField.LATENCY_SUM_NS] += latency
                row[bucket(latency)] += 1
            try:
                if kind == ARRAY:  # (inlined _decode: this runs once per message)
                    layout = LAYOUTS.get(key) or learn_layout(key, body)
                    if len(body) != layout[3]:
                        raise PlexaError(f"{len(body)} bytes for an array of {layout[3]}")
                    return _ndarray(layout[0], layout[1], body, layout[2], None)
                return self._decode(key, kind, body)
            except Exception as exc:  # refused or unreadable: counted, never handed on
                self.row[LinkField.LOST] += 1
                self.errors += 1
                self.last_error = f"link {self.link.name}: message {seq} refused: {exc}"
        return EMPTY

    def _refused(self, first: int, refusal: Refusal) -> None:
        """A refused batch: its messages (when their number is plausible) count as lost."""
        self.errors += 1
        self.last_error = f"link {self.link.name}: {refusal.reason}"
        if refusal.messages:
            row = self.row
            row[LinkField.LOST] += refusal.messages
            self.expected = row[LinkField.CONSUMED] = first + refusal.messages
            self._ack(force=False)

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
            shape, dtype, offset, length = LAYOUTS.get(key) or learn_layout(key, body)
            if len(body) != length:
                raise PlexaError(f"{len(body)} bytes for an array of {length}")
            return _ndarray(shape, dtype, body, offset, None)
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


_ndarray = np.ndarray
"""(``np.ndarray(shape, dtype, body, offset, None)``: half the time of ``np.frombuffer`` and
``reshape``, measured; read-only over the received bytes all the same.)"""


class ZenohInputPort:
    """A cross-host input port fed by one or more links; messages are taken round-robin.

    Mirrors :class:`plexa.data.inputs.InputPort` (``take``, ``get``, ``get_nowait``,
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
        if len(self._subs) == 1:
            self.take = self._subs[0].take  # type: ignore[method-assign]

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

    def take_stamped(self) -> Any:
        """``(message, sequence number, time)`` from any link of this port, or :data:`EMPTY`.
        The time (``time.monotonic_ns()``) is this host's at arrival: the producer's clock is
        another machine's."""
        subs = self._subs
        n = len(subs)
        for i in range(n):
            sub = subs[(self._next + i) % n]
            obj = sub.take()
            if obj is not EMPTY:
                self._next = (self._next + i + 1) % n
                return obj, sub.expected - 1, time.monotonic_ns()
        return EMPTY

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a message (or a wake-up of the actor)."""
        if self.has_pending():
            return
        if self._alarm is not None:
            self._alarm.arm(time.monotonic() + timeout)
            self._subs[0].block()
        else:
            self._idle_wait(timeout)

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
                seq, _, _, kind, body = sub.queue.popleft()
                sub._account(seq)
                if kind == REFUSED:
                    sub._refused(seq, body)
                elif kind != SYNC:
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
        obj = self.take()  # (no clock read when one is queued: this runs once per message)
        if obj is not EMPTY:
            return obj
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
