"""The consumer's side of local links: one :class:`InputPort` per input, one subscriber per
link into it (:mod:`plexa.data.links` holds the producer's side and the shared pieces).

Taking a message accounts for it in the link's counters (received, dropped, lost by sequence
number), measures its latency on one message in :data:`~plexa.data.links.SAMPLE_MASK` + 1,
and hands the handler a zero-copy read-only view that stays valid until it is released.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from plexa.core.spec import LinkSpec, PipelineSpec, Policy
from plexa.data import payload
from plexa.data.counters import Counters, LinkField, OutputField, bucket, received
from plexa.data.domain import LAYOUT, MAX_BORROWED, META_LEN, SEQ, T_NS, Domain, Wake, Words
from plexa.data.links import SAMPLE_MASK, IdleWait, LinkStatistics
from plexa.errors import LinkClosed, LinkError, Timeout, WouldBlock

__all__ = ["EMPTY", "InputPort", "make_sub"]

_log = logging.getLogger("plexa.links")


EMPTY: Any = object()
"""What :meth:`InputPort.take` returns when no message is queued (a message may be None)."""


class _Sub:
    """One link as its consumer holds it.

    The consumer is the only writer of its link's counters while it lives, so it keeps the
    next expected sequence number in ``expected`` and writes ``CONSUMED`` without reading it.
    """

    __slots__ = (
        "expected",
        "has_samples",
        "latest",
        "link",
        "metrics",
        "notifier",
        "out_row",
        "policy",
        "row",
        "start",
        "subscriber",
        "unreadable",
    )

    def __init__(
        self, link: LinkSpec, service: Any, counters: Counters, notifier: Any | None
    ) -> None:
        self.link = link
        self.policy = link.policy
        self.latest = link.policy is Policy.LATEST
        self.subscriber = service.subscriber_builder().buffer_size(link.capacity).create()
        self.has_samples = self.subscriber.has_samples
        self.row = counters.link_row(link.name)
        self.out_row = counters.output_row(link.output)
        self.expected = self.start = int(self.row[LinkField.CONSUMED])
        self.notifier = notifier
        self.metrics = True
        self.unreadable = 0

    def receive(self) -> Any:
        """The next sample, unaccounted, or None."""
        try:
            return self.subscriber.receive()
        except Exception as exc:
            raise self._borrow_error(exc) from exc

    def _borrow_error(self, exc: Exception) -> LinkError:
        return LinkError(
            f"link {self.link.name}: cannot take another message ({exc}); handlers may "
            f"keep at most {MAX_BORROWED - 1} received arrays alive: call .copy() on "
            "the ones you keep"
        )

    def take(self) -> Any:
        """The next message, accounted for and decoded, or :data:`EMPTY`.

        This is the path between a consumer's wake-up and its handler, run on caches gone
        cold while the consumer slept: one header read, one counter write (two on a
        ``block`` link), the payload view.
        """
        try:  # receive() and _taken() inline: two calls fewer cost ~5 % of the latency here
            sample = self.subscriber.receive()
        except Exception as exc:
            raise self._borrow_error(exc) from exc
        if sample is None:
            return EMPTY
        if self.latest and self.has_samples():
            sample = self._newest(sample)
            if sample is None:
                return EMPTY
        header = Words.from_address(sample.user_header_ptr)
        seq = header[SEQ]
        if seq != self.expected:
            self._gap(seq)
        self.expected = seq + 1
        row = self.row
        row[LinkField.CONSUMED] = seq + 1
        if self.notifier is not None and row[LinkField.WAITING]:
            row[LinkField.WAITING] = 0
            self.notifier.notify()
        if not seq & SAMPLE_MASK and self.metrics:
            self._time(header[T_NS])
        try:
            return payload.decode(header[LAYOUT], header[META_LEN], sample)
        except Exception as exc:
            self._unreadable(seq, exc)
            return EMPTY

    def _unreadable(self, seq: int, exc: Exception) -> None:
        """Message ``seq`` arrived but cannot be read here (say, a pickled class this process
        cannot import): count it as lost, not received, and say so (not for every one)."""
        self.row[LinkField.LOST] += 1
        self.unreadable += 1
        if self.unreadable & (self.unreadable - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...
            _log.error(
                "link %s: message %d cannot be read here and counts as lost (%d so far): %s: %s",
                self.link.name,
                seq,
                self.unreadable,
                type(exc).__name__,
                exc,
            )

    def take_stamped(self) -> Any:
        """Like :meth:`take`, but ``(message, sequence number, send time)`` (the time in
        ``time.monotonic_ns()`` of the producer's clock): what a recorder keeps."""
        sample = self.receive()
        if sample is None:
            return EMPTY
        if self.latest and self.has_samples():
            sample = self._newest(sample)
            if sample is None:
                return EMPTY
        header = Words.from_address(sample.user_header_ptr)
        seq, t_ns = header[SEQ], header[T_NS]
        self._taken(seq)
        return payload.decode(header[LAYOUT], header[META_LEN], sample), seq, t_ns

    def _newest(self, sample: Any) -> Any:
        """``latest``: drop every queued message but the newest, which is returned (or None).
        One sample is held at a time, so kept views do not run out the borrow limit."""
        while self.has_samples():
            self.drop(sample)
            sample = None  # released before the next one is taken
            sample = self.receive()
            if sample is None:
                return None
        return sample

    def drop(self, sample: Any) -> None:
        """Account for ``sample`` as taken off the queue and dropped."""
        self.row[LinkField.DROPPED] += 1
        self._taken(Words.from_address(sample.user_header_ptr)[SEQ])

    def _taken(self, seq: int) -> None:
        """Message ``seq`` is off the queue: count any gap before it, move ``CONSUMED`` past
        it (last, see :meth:`_gap`), wake a producer waiting for that room."""
        if seq != self.expected:
            self._gap(seq)
        self.expected = seq + 1
        row = self.row
        row[LinkField.CONSUMED] = seq + 1
        if self.notifier is not None and row[LinkField.WAITING]:
            row[LinkField.WAITING] = 0
            self.notifier.notify()

    def _gap(self, seq: int) -> None:
        """Messages before ``seq`` never arrived: dropped on drop policies, lost on ``block``.

        Counted before ``CONSUMED`` moves past them, so a reader that takes ``CONSUMED``
        first never sees more received than there were (see :meth:`Counters.snapshot`).

        A gap before the first message this subscriber takes is always dropped: those were
        sent while nobody subscribed (the one a producer was sending while the nexus counted
        the dead queue as dropped, see :func:`plexa.data.holds.release`).
        """
        missing = seq - self.expected
        if missing > 0:
            lossless = self.policy is Policy.BLOCK and self.expected != self.start
            field = LinkField.LOST if lossless else LinkField.DROPPED
            self.row[field] += missing

    def _time(self, t_ns: int) -> None:
        latency = time.monotonic_ns() - t_ns
        row = self.row
        row[LinkField.LATENCY_SUM_NS] += latency
        row[bucket(latency)] += 1

    def close(self) -> None:
        self.subscriber.delete()


class InputPort:
    """An input port fed by one or more links (fan-in); messages are taken round-robin."""

    def __init__(self, name: str, actor: str, subs: list[_Sub], idle_wait: IdleWait) -> None:
        self.name = name
        self.actor = actor
        self._subs = subs
        self._next = 0
        self._idle_wait = idle_wait
        if len(subs) == 1:
            self.take = subs[0].take  # type: ignore[method-assign]

    def take(self) -> Any:
        """The next message from any link of this port, or :data:`EMPTY`."""
        subs = self._subs
        n = len(subs)
        for i in range(n):
            sub = subs[(self._next + i) % n]
            obj = sub.take()
            if obj is not EMPTY:
                self._next = (self._next + i + 1) % n
                return obj
        return EMPTY

    def take_stamped(self) -> Any:
        """``(message, sequence number, send time)`` from any link of this port (see
        :meth:`_Sub.take_stamped`), or :data:`EMPTY`."""
        subs = self._subs
        n = len(subs)
        for i in range(n):
            sub = subs[(self._next + i) % n]
            got = sub.take_stamped()
            if got is not EMPTY:
                self._next = (self._next + i + 1) % n
                return got
        return EMPTY

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a wake-up: a message on any input of this actor, or
        a command (a safe point before and after)."""
        self._idle_wait(timeout)

    def discard(self) -> int:
        """Drop every queued message, counting each as dropped; returns how many."""
        count = 0
        for sub in self._subs:
            while True:
                sample = sub.receive()
                if sample is None:
                    break
                sub.drop(sample)
                count += 1
        return count

    def has_pending(self) -> bool:
        """True when a message waits on some link of this port."""
        return any(sub.has_samples() for sub in self._subs)

    def closed(self) -> bool:
        """True when every link of this port is closed (its producer is gone for good)."""
        return all(sub.row[LinkField.CLOSED] for sub in self._subs)

    def get_nowait(self) -> Any:
        """The next message; :class:`WouldBlock` if none is queued, :class:`LinkClosed` if
        none ever will be."""
        obj = self.take()
        if obj is EMPTY:
            if self._subs and self.closed():
                raise LinkClosed(f"input {self.actor}.{self.name}: every producer is gone")
            raise WouldBlock(f"input {self.actor}.{self.name} is empty")
        return obj

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: forever).

        Waiting is a safe point: a pause blocks here, a stop ends the step.
        Raises :class:`plexa.Timeout` when nothing came in time, and :class:`plexa.LinkClosed`
        when nothing is queued and every producer of this port is gone for good.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            obj = self.take()
            if obj is not EMPTY:
                return obj
            if self._subs and self.closed():
                raise LinkClosed(f"input {self.actor}.{self.name}: every producer is gone")
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"input {self.actor}.{self.name}: nothing within {timeout} s")
            self._idle_wait(min(left, 0.1))

    def statistics(self) -> dict[str, LinkStatistics]:
        """Per-link counts."""
        return {
            sub.link.name: LinkStatistics(
                sent=int(sub.out_row[OutputField.SENT]),
                received=received(sub.row),
                dropped=int(sub.row[LinkField.DROPPED]),
                lost=int(sub.row[LinkField.LOST]),
            )
            for sub in self._subs
        }

    def close(self) -> None:
        """Release the subscribers."""
        for sub in self._subs:
            sub.close()


def make_sub(
    link: LinkSpec, domain: Domain, spec: PipelineSpec, counters: Counters, wake: Wake
) -> _Sub:
    """The consumer's end of ``link``."""
    notifier = wake.notifier(link.src) if link.policy is Policy.BLOCK else None
    sub = _Sub(link, domain.output_service(spec, link.output), counters, notifier)
    sub.metrics = spec.settings.metrics
    if sub.row[LinkField.HOLD]:  # we replace a consumer that died: let the producer go on
        sub.row[LinkField.HOLD] = 0
        if notifier is not None:
            notifier.notify()
    return sub
