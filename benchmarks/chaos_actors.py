"""Actors the chaos benchmark (:mod:`benchmarks.chaos`) kills, freezes and breaks.

Every actor has an ``explode`` command (``Nexus.invoke(name, "explode")``): it arms a fault
that raises :class:`InjectedFault` from the next step or handler call, so the failure happens
in user code while running, like a real bug would.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

import plexa

__all__ = ["ChaosRelay", "ChaosSink", "ChaosSource", "InjectedFault"]


class InjectedFault(RuntimeError):
    """The exception an armed actor raises."""


class _Explosive(plexa.Actor):
    """Adds the ``explode`` command: the next step or handler call raises."""

    armed = False

    @plexa.command
    def explode(self) -> str:
        """Arm the fault; it goes off in the next step or handler call."""
        self.armed = True
        return "armed"

    def fuse(self) -> None:
        """Raise if armed (called at the top of every step and handler)."""
        if self.armed:
            raise InjectedFault(f"{self.name}: fault injected by benchmarks/chaos.py")


class ChaosSource(_Explosive):
    """Sends one ``size``-byte int64 frame every ``1/rate_hz`` s on each of its two ports,
    ``frames`` and ``tap`` (written into loaned shared memory).

    Two ports, because a policy belongs to a port's connection: the benchmark connects
    ``frames`` losslessly and ``tap`` with a drop policy. The frame carries this process's
    frame number in its first and last elements.
    """

    outputs = plexa.ports("frames", "tap")

    def setup(self, size: int = 65536, rate_hz: float = 500.0) -> None:
        self.shape = (max(size // 8, 1),)
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.count = 0
        self.due = time.monotonic()

    def run_step(self) -> None:
        self.fuse()
        if self.period:
            delay = self.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # after a hold (a restarting block consumer), do not burst to catch up
            self.due = max(self.due + self.period, time.monotonic() - self.period)
        for port in (self.outputs.frames, self.outputs.tap):
            with port.loan(self.shape, np.int64) as frame:
                frame[0] = self.count
                frame[-1] = self.count
        self.count += 1


class ChaosRelay(_Explosive):
    """Forwards every frame from ``inp`` to ``out`` (a copy into a new sample).

    Every ``stall_every`` frames (0: never) it sleeps ``stall_s``, so that a drop policy on
    its input has something to drop while everyone is alive.
    """

    outputs = plexa.ports("out")

    def setup(self, stall_every: int = 0, stall_s: float = 0.0) -> None:
        self.stall_every = stall_every
        self.stall_s = stall_s
        self.count = 0

    @plexa.on("inp")
    def got(self, frame: npt.NDArray[Any]) -> None:
        self.fuse()
        self.count += 1
        if self.stall_every and self.count % self.stall_every == 0:
            time.sleep(self.stall_s)
        self.outputs.out.put(frame)


class ChaosSink(_Explosive):
    """Counts the frames that arrive on ``inp`` and checks each is whole."""

    def setup(self) -> None:
        self.count = 0
        self.torn = 0

    @plexa.on("inp")
    def got(self, frame: npt.NDArray[Any]) -> None:
        self.fuse()
        self.count += 1
        if frame[0] != frame[-1]:
            self.torn += 1
            self.log.error("torn frame: first %d, last %d", frame[0], frame[-1])
