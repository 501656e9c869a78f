"""The launch interface: where an actor's process runs, how it is signalled and stopped.

The nexus never starts or kills a process itself: it asks a :class:`Launcher` for an
:class:`ActorProcess` handle and walks the stop ladder (:mod:`plexa.core.ladder`, re-exported
here) over handles. Local processes
(:mod:`plexa.launch.local`) are the one implementation today; a remote-host launcher and a
Ray launcher implement the same two protocols.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
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
    "signal_group",
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


def signal_group(
    pid: int, sig: int, alone: Callable[[int], None] | None = None
) -> None:
    """Signal the process group led by ``pid`` (an actor runs in its own session, so that is
    the actor and the children that stayed in its group); if there is no such group any more,
    the process alone (``alone(sig)``, by default ``os.kill(pid, sig)``). A process already
    gone is no error."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            (alone or (lambda s: os.kill(pid, s)))(sig)
    except PermissionError:  # pragma: no cover - the group is ours by construction
        pass
