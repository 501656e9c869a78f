"""Shared counters of a run: one int64 slot per (link or actor, field), in shared memory.

Each slot has exactly one writer (a producer, a consumer, or the nexus), so plain aligned
8-byte stores suffice. The nexus reads them for status and metrics without asking actors,
and a producer reads its consumers' positions to apply ``block`` backpressure.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from plexa.core.spec import PipelineSpec
from plexa.errors import OutOfSharedMemory

__all__ = [
    "ActorField",
    "Counters",
    "LinkField",
    "OutputField",
    "bucket",
    "percentile",
    "received",
    "timed",
]


class OutputField:
    """Per output port; written by the producer."""

    SENT = 0
    BYTES = 1
    EPOCH = 2
    TAPS = 3
    """Recording taps open on this output (written by the recorder): while there are any,
    the producer also wakes the run's tap listener after each send (:meth:`Wake.tap`)."""


class LinkField:
    """Per link; CONSUMED, DROPPED, LOST written by the consumer."""

    CONSUMED = 0
    """Sequence number the consumer expects next (every message below it is accounted for)."""
    RECEIVED = 1
    """Derived, never written: ``CONSUMED - DROPPED - LOST``, filled in by
    :meth:`Counters.snapshot` (one counter write less per message)."""
    DROPPED = 2
    LOST = 3
    DETACHED = 4
    """Set by the nexus while the consumer is gone, so a producer does not wait for it."""
    WAITING = 5
    """Set by a producer waiting for room; the consumer wakes it after taking a message."""
    LATENCY_SUM_NS = 6
    """Sum of the one-way latencies of the messages taken (with the histogram: a Prometheus
    histogram's ``_sum``)."""
    HOLD = 7
    """Set by the nexus while a ``block`` link's consumer is being restarted: the producer
    waits; the new consumer clears it once it is subscribed."""
    CLOSED = 8
    """Set by the nexus when the producer is gone for good: no more messages will come
    (``get`` raises :class:`plexa.LinkClosed` once the queue is empty)."""


class ActorField:
    """Per actor; written by the actor process. (Its messages in and out are the counts of
    its links and output ports: see ``_status``.)"""

    HANDLER_NS = 0
    """Total time spent in the timed handler calls or steps (one in 8)."""
    HANDLER_CALLS = 1


HIST_BASE = 16
"""First column of each row's histogram (link latency, actor handler time)."""
HIST_BUCKETS = 32
_WIDTH = HIST_BASE + HIST_BUCKETS


def received(row: Row) -> int:
    """Messages a link's consumer has taken and not dropped (see ``LinkField.RECEIVED``)."""
    consumed = int(row[LinkField.CONSUMED])
    return consumed - int(row[LinkField.DROPPED]) - int(row[LinkField.LOST])


def bucket(ns: int) -> int:
    """Histogram column of a duration: bucket k holds [2**(k-1), 2**k) microseconds."""
    return HIST_BASE + min(HIST_BUCKETS - 1, max(ns, 0).__rshift__(10).bit_length())


def timed(row: Row, fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn`` and add its duration to ``row``'s handler-time counters (an actor's row)."""
    clock = time.perf_counter_ns
    t0 = clock()
    fn(*args)
    took = clock() - t0
    row[ActorField.HANDLER_NS] += took
    row[ActorField.HANDLER_CALLS] += 1
    row[bucket(took)] += 1


def percentile(hist: npt.NDArray[np.int64], q: float) -> float | None:
    """The ``q`` quantile (0..1) in microseconds of a histogram, or None if it is empty.

    The answer is the geometric middle of the bucket holding the quantile (within ~40 %).
    """
    total = int(hist.sum())
    if total <= 0:
        return None
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    if k == 0:
        return 0.5
    return round(1.024 * 2 ** (k - 0.5), 1)


Row = ctypes.Array[ctypes.c_int64]
"""One row of counters: a ctypes int64 array over the shared mapping (fast scalar access)."""


class Counters:
    """The counters of one run, mapped from ``path``.

    Rows are ctypes arrays over the mapping: a scalar update costs ~0.15 us there against
    ~1 us on a numpy memmap row, and links update several per message.
    """

    def __init__(
        self, spec: PipelineSpec, path: Path, *, create: bool = False, grow: bool = False
    ) -> None:
        """Map the counters of ``spec`` at ``path``: ``create`` a new file (zeroed), or
        ``grow`` the file to ``spec``'s size keeping every count (an actor was added to the
        live run: its row comes last, so the others keep their places)."""
        self.outputs = sorted({link.output for link in spec.links})
        self.links = [link.name for link in spec.links]
        self.actors = list(spec.actors)
        rows = max(len(self.outputs) + len(self.links) + len(self.actors), 1)
        size = rows * _WIDTH * 8
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create or grow:  # backed now: a page of a full /dev/shm touched later is SIGBUS
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    raise OutOfSharedMemory(f"no room for the run's counters in {path}") from exc
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.array: npt.NDArray[np.int64] = np.frombuffer(self._mm, np.int64).reshape(rows, _WIDTH)
        self._rows = [
            (ctypes.c_int64 * _WIDTH).from_buffer(self._mm, i * _WIDTH * 8) for i in range(rows)
        ]
        self._out_base = 0
        self._link_base = len(self.outputs)
        self._actor_base = self._link_base + len(self.links)

    def output_index(self, output: str) -> int:
        """Row number of output port ``SRC.port``."""
        return self._out_base + self.outputs.index(output)

    def link_index(self, link: str) -> int:
        """Row number of link ``SRC.port->DST.port``."""
        return self._link_base + self.links.index(link)

    def actor_index(self, actor: str) -> int:
        """Row number of actor ``actor``."""
        return self._actor_base + self.actors.index(actor)

    def output_row(self, output: str) -> Row:
        """The slots of output port ``SRC.port``."""
        return self._rows[self.output_index(output)]

    def link_row(self, link: str) -> Row:
        """The slots of link ``SRC.port->DST.port``."""
        return self._rows[self.link_index(link)]

    def actor_row(self, actor: str) -> Row:
        """The slots of actor ``actor``."""
        return self._rows[self.actor_index(actor)]

    def snapshot(self) -> npt.NDArray[np.int64]:
        """A private copy of every counter, ``RECEIVED`` of every link filled in.

        The copy runs in address order, so ``CONSUMED`` is read before ``DROPPED`` and
        ``LOST``, which consumers update before ``CONSUMED``: ``RECEIVED`` never overshoots.
        """
        snap = np.array(self.array)
        links = snap[self._link_base : self._actor_base]
        links[:, LinkField.RECEIVED] = (
            links[:, LinkField.CONSUMED] - links[:, LinkField.DROPPED] - links[:, LinkField.LOST]
        )
        return snap

    def close(self) -> None:
        """Drop this process's references to the mapping (it is unmapped once unused)."""
        self._rows = []
        self.array = np.zeros((0, _WIDTH), np.int64)
