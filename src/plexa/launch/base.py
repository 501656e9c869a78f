"""The launch interface: where an actor's process runs, how it is signalled and stopped.

The nexus never starts or kills a process itself: it asks a :class:`Launcher` for an
:class:`ActorProcess` handle and walks the stop ladder (:mod:`plexa.core.ladder`, re-exported
here) over handles. Local processes
(:mod:`plexa.launch.local`) are the one implementation today; a remote-host launcher and a
Ray launcher implement the same two protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from plexa.core.ladder import LadderOutcome, Rung, Stoppable, stop_ladder

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
