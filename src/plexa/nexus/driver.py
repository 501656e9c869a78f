"""One call that runs a pipeline from start to report: what ``plexa run``, ``plexa server``,
the TUI, the test helpers and the benchmarks all use.

``drive(nexus)``: start -> setup -> run (unless held) -> serve until a condition, a ``quit``
command, Ctrl-C, or a failure that ends the run -> stop (producers first, draining) ->
quit (the stop ladder) -> the outcome. However it ends, ``quit`` runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plexa.core.spec import OnFailure
from plexa.errors import InvalidTransition, PlexaError
from plexa.nexus.failures import QuitReport
from plexa.nexus.nexus import Nexus

__all__ = ["RunOutcome", "drive"]

TURN_S = 0.1
"""How often ``between`` is called while the run is served."""


@dataclass(frozen=True)
class RunOutcome:
    """How a driven run ended."""

    report: QuitReport
    """What ``quit`` found: who needed which rung, every failure, the log and report paths."""
    status: dict[str, Any]
    """The last status document (its ``run.state``: ``stopped`` or ``failed``)."""
    interrupted: bool = False
    """Ctrl-C (or SIGTERM turned into it) ended the run."""
    error: PlexaError | None = None
    """What ended the run early (a setup timeout, an actor that failed for good), if anything."""

    @property
    def exit_code(self) -> int:
        """The exit status of ``plexa run``: 0 clean, 1 failed for good, 3 all recovered."""
        if self.error is not None and not self.report.failures:
            return 1
        return self.report.exit_code


def drive(
    nexus: Nexus,
    *,
    hold: bool = False,
    until: Callable[[], bool] | None = None,
    duration: float | None = None,
    started: Callable[[], None] | None = None,
    between: Callable[[], None] | None = None,
) -> RunOutcome:
    """Run ``nexus`` from start to quit and say how it ended.

    ``hold``: start only, and wait for ``setup``/``run`` commands from clients.
    ``until()``: end the run when it returns true (also: ``duration`` seconds after start, a
    ``quit`` command, or an actor failed for good under ``on_failure: stop``).
    ``started()`` is called once the processes are up; ``between()`` about every 0.1 s.
    """
    interrupted = False
    error: PlexaError | None = None
    end: float | None = None
    settings = nexus.spec.settings

    def done() -> bool:
        if nexus.quit_requested or (end is not None and time.monotonic() >= end):
            return True
        if nexus.failed and settings.on_failure is OnFailure.STOP:
            return True
        return until is not None and until()

    try:
        try:
            nexus.start()
            if started is not None:
                started()
            if not hold:
                nexus.setup()
                nexus.run()
            if duration is not None:  # counted from when the run runs (or is held)
                end = time.monotonic() + duration
            while not done():
                nexus.poll(TURN_S)
                if between is not None:
                    between()
        except KeyboardInterrupt:
            interrupted = True  # Ctrl-C ends the run gracefully: stop, drain, quit
        with contextlib.suppress(InvalidTransition):
            nexus.stop()
    except KeyboardInterrupt:
        interrupted = True  # a second Ctrl-C: straight to quit
    except PlexaError as exc:
        error = exc
    finally:
        status = nexus.status()
        report = nexus.quit()
    status["run"]["state"] = "failed" if report.failures or error is not None else "stopped"
    return RunOutcome(report, status, interrupted, error)
