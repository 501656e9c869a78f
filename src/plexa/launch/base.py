"""The launch interface: where an actor's process runs, how it is signalled and stopped.

The nexus never starts or kills a process itself: it asks a :class:`Launcher` for an
:class:`ActorProcess` handle and walks the :func:`stop_ladder` over handles. Local processes
(:mod:`plexa.launch.local`) are the one implementation today; a remote-host launcher and a
Ray launcher implement the same two protocols.
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ActorProcess",
    "LadderOutcome",
    "LaunchRequest",
    "Launcher",
    "Rung",
    "Stoppable",
    "stop_ladder",
]


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a launcher needs to start one actor process."""

    run_id: str
    """The run's id (children of the actor carry it in ``PLEXA_RUN_ID``)."""
    run_dir: str
    """The run directory (spec, sockets, counters)."""
    actor: str
    """The actor's name."""
    nexus_pid: int
    """The nexus's pid: the actor exits when it is gone."""
    import_path: tuple[str, ...] = ()
    """Folders put first on the actor's ``sys.path`` (the nexus's own, the config's folder)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment variables."""


class Stoppable(Protocol):
    """A process the stop ladder can walk: ask it, signal it, see whether it is gone."""

    @property
    def label(self) -> str:
        """A name for reports (``camera``, ``worker 2``)."""

    def alive(self) -> bool:
        """True until the process has exited and been reaped."""

    def send(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` to the process and everything it started (no error if gone)."""


class ActorProcess(Stoppable, Protocol):
    """A launched actor process, wherever it runs."""

    @property
    def pid(self) -> int:
        """Its process id (on its host)."""

    def exit_code(self) -> int | None:
        """The exit code once it has ended (negative: the signal that ended it), else None."""

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """Readable file descriptors of its output, with a label (``stdout``, ``stderr``)."""


class Launcher(Protocol):
    """Starts actor processes. The handshake (READY under a deadline) is the nexus's, over
    the control channel, the same for every launcher."""

    def spawn(self, request: LaunchRequest) -> ActorProcess:
        """Start the actor process described by ``request``; return at once."""

    def close(self) -> None:
        """Release what the launcher holds (after every process is gone)."""


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
