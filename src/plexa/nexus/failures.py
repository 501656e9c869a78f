"""Failures and how a run ended: the records, and the failure report written beside the log."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plexa.core.ladder import Rung
from plexa.core.lifecycle import FailureKind, Phase
from plexa.core.paths import write_private

__all__ = ["ActorFailure", "QuitReport", "exit_failure", "write_json"]


@dataclass(frozen=True)
class ActorFailure:
    """What happened to a failed actor."""

    actor: str
    """Actor name."""
    kind: FailureKind
    """How it failed."""
    phase: Phase
    """Where in the lifecycle."""
    error: str
    """One line: the exception or the exit status."""
    traceback: str = ""
    """The remote traceback, when there is one."""
    exit_code: int | None = None
    """The process's exit code (negative: killed by that signal)."""

    def __str__(self) -> str:
        text = (
            f"actor {self.actor!r} failed ({self.kind.value} in {self.phase.value}): {self.error}"
        )
        return f"{text}\n{self.traceback.rstrip()}" if self.traceback else text

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used in the failure report, the status document and events."""
        return {
            "actor": self.actor,
            "kind": self.kind.value,
            "phase": self.phase.value,
            "error": self.error,
            "traceback": self.traceback,
            "exit_code": self.exit_code,
        }


def exit_failure(actor: str, code: int, phase: Phase) -> ActorFailure | None:
    """The failure an unasked-for exit with ``code`` means (None: exiting 0 is no failure)."""
    if code == 0:
        return None
    if code < 0:
        kind = FailureKind.KILLED if -code == signal.SIGKILL else FailureKind.CRASHED
        return ActorFailure(actor, kind, phase, f"killed by {signal.Signals(-code).name}", "", code)
    return ActorFailure(actor, FailureKind.CRASHED, phase, f"exited with code {code}", "", code)


@dataclass(frozen=True)
class QuitReport:
    """How a run ended: who quit when asked, who needed SIGTERM or SIGKILL, what was removed."""

    graceful: tuple[str, ...]
    """Actors that quit when asked."""
    terminated: tuple[str, ...]
    """Actors that needed SIGTERM."""
    killed: tuple[str, ...]
    """Actors that needed SIGKILL (or survived it)."""
    removed: tuple[str, ...]
    """Files and shared memory that had to be removed by force."""
    failures: tuple[ActorFailure, ...]
    """Every failure of the run, recovered or not."""
    failed: tuple[str, ...] = ()
    """Actors that had failed for good when the run ended."""
    restarts: dict[str, int] = field(default_factory=dict)
    """Restarts per actor."""
    report: str = ""
    """Path of the failure report written for this run."""
    log: str = ""
    """Path of the run's merged log."""
    quit_s: float = 0.0
    """Seconds from the start of ``quit`` to the last process gone and everything removed."""

    @classmethod
    def of(
        cls,
        rungs: Mapping[str, Rung],
        removed: Iterable[str],
        failures: Iterable[ActorFailure],
        **rest: Any,
    ) -> QuitReport:
        """The report for actors that ended on ``rungs`` of the quit ladder (``rest``: the
        fields after ``failures``)."""

        def on(*wanted: Rung) -> tuple[str, ...]:
            return tuple(n for n, r in rungs.items() if r in wanted)

        return cls(
            on(Rung.ASKED),
            on(Rung.TERMINATED),
            on(Rung.KILLED, Rung.LOST),
            tuple(removed),
            tuple(failures),
            **rest,
        )

    @property
    def clean(self) -> bool:
        """True only when every actor stopped and quit when asked and none failed."""
        return not (self.terminated or self.killed or self.failures)

    @property
    def exit_code(self) -> int:
        """0: clean; 1: an actor failed for good or had to be killed; 3: every failure recovered."""
        if self.failed or self.terminated or self.killed:
            return 1
        return 3 if self.failures else 0


def write_json(path: Path, document: dict[str, Any]) -> bool:
    """Write ``document`` to ``path`` atomically (a fresh temp file, then rename).

    Returns False instead of raising when the disk is full or the folder is gone: a report
    that cannot be written must not end the run.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(document, indent=2).encode())
    except OSError:
        return False
    return True
