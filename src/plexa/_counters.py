"""Shared counters of a run: one int64 slot per (link or actor, field), in shared memory.

Each slot has exactly one writer (a producer, a consumer, or the nexus), so plain aligned
8-byte stores suffice. The nexus reads them for status and metrics without asking actors,
and a producer reads its consumers' positions to apply ``block`` backpressure.
"""

from __future__ import annotations

import contextlib
import enum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from plexa._spec import PipelineSpec

__all__ = ["ActorField", "Counters", "LinkField", "OutputField", "bucket", "percentile"]


class OutputField(enum.IntEnum):
    """Per output port; written by the producer."""

    SENT = 0
    BYTES = 1
    EPOCH = 2


class LinkField(enum.IntEnum):
    """Per link; CONSUMED, RECEIVED, DROPPED, LOST written by the consumer."""

    CONSUMED = 0
    """Sequence number the consumer expects next (every message below it is accounted for)."""
    RECEIVED = 1
    DROPPED = 2
    LOST = 3
    DETACHED = 4
    """Set by the nexus while the consumer is gone, so a producer does not wait for it."""
    WAITING = 5
    """Set by a producer waiting for room; the consumer wakes it after taking a message."""
    LATENCY_NS = 6
    """One-way latency of the last message taken."""
    HOLD = 7
    """Set by the nexus while a ``block`` link's consumer is being restarted: the producer
    waits; the new consumer clears it once it is subscribed."""


class ActorField(enum.IntEnum):
    """Per actor; written by the actor process."""

    MSGS_IN = 0
    MSGS_OUT = 1
    LOOPS = 2
    """Incremented at every safe point: a stuck actor stops counting."""
    HANDLER_NS = 3
    """Total time spent in handlers or steps."""
    HANDLER_CALLS = 4


HIST_BASE = 16
"""First column of each row's histogram (link latency, actor handler time)."""
HIST_BUCKETS = 32
_WIDTH = HIST_BASE + HIST_BUCKETS


def bucket(ns: int) -> int:
    """Histogram column of a duration: bucket k holds [2**(k-1), 2**k) microseconds."""
    return HIST_BASE + min(HIST_BUCKETS - 1, max(ns, 0).__rshift__(10).bit_length())


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


class Counters:
    """The counters of one run, mapped from ``path``."""

    def __init__(self, spec: PipelineSpec, path: Path, *, create: bool = False) -> None:
        self.outputs = sorted({link.output for link in spec.links})
        self.links = [link.name for link in spec.links]
        self.actors = list(spec.actors)
        rows = len(self.outputs) + len(self.links) + len(self.actors)
        shape = (max(rows, 1), _WIDTH)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.array: npt.NDArray[np.int64] = np.memmap(path, np.int64, "w+", shape=shape)
        else:
            self.array = np.memmap(path, np.int64, "r+", shape=shape)
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

    def output_row(self, output: str) -> npt.NDArray[np.int64]:
        """The slots of output port ``SRC.port``."""
        row: npt.NDArray[np.int64] = self.array[self._out_base + self.outputs.index(output)]
        return row

    def link_row(self, link: str) -> npt.NDArray[np.int64]:
        """The slots of link ``SRC.port->DST.port``."""
        row: npt.NDArray[np.int64] = self.array[self._link_base + self.links.index(link)]
        return row

    def actor_row(self, actor: str) -> npt.NDArray[np.int64]:
        """The slots of actor ``actor``."""
        row: npt.NDArray[np.int64] = self.array[self._actor_base + self.actors.index(actor)]
        return row

    def snapshot(self) -> npt.NDArray[np.int64]:
        """A private copy of every counter."""
        return np.array(self.array)

    def close(self) -> None:
        """Unmap the counters."""
        mm = getattr(self.array, "_mmap", None)
        del self.array
        if mm is not None:
            with contextlib.suppress(BufferError):
                mm.close()
