"""The stop ladder: ask -> wait -> SIGTERM -> wait -> SIGKILL -> reap, and who needed which rung.

One ladder for everything plexa stops: actor processes (whatever launched them), worker
processes of a pool, what ``plexa cleanup`` ends. It is pure logic over handles that can be
signalled and asked whether they are alive; the waiting is the caller's (so a nexus keeps
serving its sockets while it waits).
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LadderOutcome", "Rung", "Stoppable", "Waiter", "stop_ladder"]


class Stoppable(Protocol):
    """A process the stop ladder can walk: ask it, signal it, see whether it is gone."""

    @property
    def label(self) -> str:
        """A name for reports (``camera``, ``worker 2``)."""

    def alive(self) -> bool:
        """True until the process has exited and been reaped."""

    def send(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` to the process and everything it started (no error if gone)."""


class Rung(enum.StrEnum):
    """How a process ended under the stop ladder."""

    ASKED = "asked"
    """It quit when asked."""
    TERMINATED = "terminated"
    """It needed SIGTERM."""
    KILLED = "killed"
    """It needed SIGKILL."""
    LOST = "lost"
    """It survived even SIGKILL within the deadline (unkillable: D state, another host)."""


@dataclass(frozen=True)
class LadderOutcome:
    """Who left at which rung of the stop ladder."""

    rungs: dict[str, Rung] = field(default_factory=dict)
    """Per process label, the rung at which it was gone."""
    took_s: float = 0.0
    """Wall time of the whole ladder."""

    def at(self, rung: Rung) -> tuple[str, ...]:
        """The labels of processes that left at ``rung``."""
        return tuple(label for label, r in self.rungs.items() if r is rung)


Waiter = Callable[[float], None]
"""Waits up to the given seconds for something to happen (the nexus polls its sockets)."""


def _sleep(timeout: float) -> None:
    time.sleep(min(timeout, 0.005))


def stop_ladder(
    procs: Sequence[Stoppable],
    *,
    ask: Callable[[Stoppable], bool] | None = None,
    grace: float,
    wait: Waiter = _sleep,
    kill_grace: float = 5.0,
) -> LadderOutcome:
    """Stop ``procs``: ask -> wait ``grace`` -> SIGTERM -> wait ``grace`` -> SIGKILL -> reap.

    ``ask(proc)`` asks one process to quit and returns False when it cannot be asked (then
    it gets SIGTERM at once). ``wait(seconds)`` is called while waiting, so a caller with its
    own loop keeps serving it. Always returns; says who needed which rung.
    """
    started = time.monotonic()
    rungs: dict[str, Rung] = {}
    live = [p for p in procs if p.alive()]
    for proc in procs:
        if proc not in live:
            rungs[proc.label] = Rung.ASKED
    steps: list[tuple[Rung, Callable[[Stoppable], None] | None, float]] = [
        (Rung.ASKED, None, grace),
        (Rung.TERMINATED, lambda p: p.send(signal.SIGTERM), grace),
        (Rung.KILLED, lambda p: p.send(signal.SIGKILL), kill_grace),
    ]
    unasked: set[str] = set()
    for rung, action, limit in steps:
        if not live:
            break
        for proc in live:
            if action is not None:
                action(proc)
            elif ask is None or not ask(proc):
                proc.send(signal.SIGTERM)
                unasked.add(proc.label)
        deadline = time.monotonic() + limit
        while True:
            still = [p for p in live if p.alive()]
            for proc in live:
                if proc not in still:
                    early = rung is Rung.ASKED and proc.label in unasked
                    rungs[proc.label] = Rung.TERMINATED if early else rung
            live = still
            left = deadline - time.monotonic()
            if not live or left <= 0:
                break
            wait(min(left, 0.05))
    for proc in live:
        rungs[proc.label] = Rung.LOST
    return LadderOutcome(rungs, time.monotonic() - started)
