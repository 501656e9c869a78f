"""The workload every peer runs, and the control file through which it talks to peers.py.

This module needs only numpy and the standard library: it is imported by the peers' own
processes, each in its own virtual environment.

A generator sends 512x512 uint16 frames; the first 16 bytes of each frame carry its
sequence number and the ``time.monotonic_ns()`` at which it was sent. A processor computes
``frame.mean()`` of each frame it handles. Both write counters into the control file (one
writer per slot), which the benchmark reads: how many frames were sent, handled and missing
from the numbering, when the first frame was handled, and, while the benchmark asks for
latency, one (send time, latency) row per frame.
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SHAPE = (512, 512)
DTYPE = "uint16"
NBYTES = 512 * 512 * 2
IN_FLIGHT = 8
"""Frames sent and not yet handled, at most (the lossless window of every peer)."""
RATE_HZ = 200.0
"""Send rate while the benchmark measures latency."""
MAX_SAMPLES = 1 << 16
"""Latency rows kept (a ring: the benchmark reads them before they are overwritten)."""
_SLOTS = 32


class Mode(enum.IntEnum):
    """What the generator does now (set by the benchmark)."""

    FAST = 0
    """As fast as the peer lets it, lossless, at most IN_FLIGHT in flight."""
    PAUSE = 1
    """Send nothing."""
    PACED = 2
    """RATE_HZ frames per second; the processor records latencies."""


class Slot(enum.IntEnum):
    """The int64 slots of the control file; each has one writer."""

    MODE = 0
    """A :class:`Mode` (benchmark)."""
    SENT = 1
    """Frames sent (generator)."""
    HANDLED = 2
    """Frames handled (processor)."""
    LOST = 3
    """Frames missing from the numbering the processor saw (processor)."""
    FIRST_NS = 4
    """``monotonic_ns()`` at which the first frame was handled (processor)."""
    SAMPLES = 5
    """Latency rows written so far (processor; the ring index is this modulo MAX_SAMPLES)."""
    GEN_PID = 6
    PROC_PID = 7
    CHECKSUM = 8
    """Sum of the means, truncated (processor): proof that the work was done."""


@dataclass(frozen=True)
class Config:
    """What a peer's launcher is given (JSON, first command-line argument)."""

    ctl: str
    """Path of the control file."""
    workdir: str
    """A private directory for whatever files the peer needs."""

    def to_json(self) -> str:
        """The config as one JSON argument."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Read a config written by :meth:`to_json`."""
        return cls(**json.loads(text))


class Ctl:
    """The control file: int64 slots, then MAX_SAMPLES rows of (send ns, latency ns)."""

    def __init__(self, path: str, *, create: bool = False) -> None:
        size = _SLOTS + 2 * MAX_SAMPLES
        self.array = np.memmap(path, np.int64, "w+" if create else "r+", shape=(size,))
        self.slots = self.array[:_SLOTS]
        self.rows = self.array[_SLOTS:].reshape(MAX_SAMPLES, 2)
        if create:
            self.slots[Slot.MODE] = Mode.FAST

    def __getitem__(self, slot: Slot) -> int:
        return int(self.slots[slot])

    def __setitem__(self, slot: Slot, value: int) -> None:
        self.slots[slot] = value

    def mode(self) -> Mode:
        """The current :class:`Mode`."""
        return Mode(int(self.slots[Slot.MODE]))


def stamp(frame: Any, seq: int) -> None:
    """Write ``seq`` and the send time into the first 16 bytes of ``frame``."""
    head = frame.reshape(-1).view(np.uint64)
    head[0] = seq
    head[1] = time.monotonic_ns()


class Generator:
    """The generator's side of the workload, whatever carries the frames.

    A peer calls :meth:`wait` before each frame (it sleeps while paused and paces at
    RATE_HZ when asked), fills the frame it will send with :meth:`fill`, and calls
    :meth:`sent` once the frame is on its way.
    """

    def __init__(self, ctl_path: str) -> None:
        self.ctl = Ctl(ctl_path)
        self.ctl[Slot.GEN_PID] = os.getpid()
        self.source = np.arange(NBYTES // 2, dtype=np.uint16).reshape(SHAPE)
        self.seq = 0
        self.due = time.monotonic()

    def delay(self) -> float:
        """Seconds to wait before the next frame (0: send now). Paced and paused modes
        return a positive delay; a peer sleeps it its own way (``time.sleep``,
        ``asyncio.sleep``) and asks again."""
        mode = self.ctl.mode()
        if mode == Mode.FAST:
            return 0.0
        now = time.monotonic()
        if mode == Mode.PAUSE:
            self.due = now
            return 0.001
        left = self.due - now
        if left > 0:
            return left
        self.due = max(self.due + 1.0 / RATE_HZ, now - 1.0 / RATE_HZ)
        return 0.0

    def wait(self) -> None:
        """Sleep until the next frame is due."""
        while (left := self.delay()) > 0:
            time.sleep(left)

    def fill(self, frame: Any) -> None:
        """Copy the source frame into ``frame`` and stamp it (the last step before sending)."""
        np.copyto(frame, self.source)
        stamp(frame, self.seq)

    def frame(self) -> Any:
        """A new stamped frame (for peers that send an array rather than fill a buffer)."""
        self.source.reshape(-1).view(np.uint64)[0] = self.seq
        self.source.reshape(-1).view(np.uint64)[1] = time.monotonic_ns()
        return self.source

    def sent(self) -> None:
        """Count one frame sent."""
        self.seq += 1
        self.ctl[Slot.SENT] = self.seq


class Processor:
    """The processor's side: :meth:`handle` is called with each frame, as the peer's handler."""

    def __init__(self, ctl_path: str) -> None:
        self.ctl = Ctl(ctl_path)
        self.ctl[Slot.PROC_PID] = os.getpid()
        self.slots = self.ctl.slots
        self.rows = self.ctl.rows
        self.expected = 0
        self.handled = 0
        self.checksum = 0.0

    def handle(self, frame: Any) -> float:
        """Account for one frame and compute its mean (the workload)."""
        now = time.monotonic_ns()
        head = frame.reshape(-1).view(np.uint64)
        seq, sent_at = int(head[0]), int(head[1])
        slots = self.slots
        if seq != self.expected:
            slots[Slot.LOST] += seq - self.expected
        self.expected = seq + 1
        if slots[Slot.MODE] == Mode.PACED:
            n = int(slots[Slot.SAMPLES])
            self.rows[n % MAX_SAMPLES] = sent_at, now - sent_at
            slots[Slot.SAMPLES] = n + 1
        mean = float(frame.mean())
        self.checksum += mean
        self.handled += 1
        if self.handled == 1:
            slots[Slot.FIRST_NS] = now
        slots[Slot.HANDLED] = self.handled
        slots[Slot.CHECKSUM] = int(self.checksum)
        return mean
