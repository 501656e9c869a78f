"""Worker jobs: Python modules a run starts beside its actors (turberfield's Initiator).

A job is ``python -m MODULE --guid GUID --port PORT``, with a TCP port the OS assigned and
no other job of the run holds, that reads its configuration (one JSON line) from standard
input within a deadline. It is supervised with the actors' restart policies and stopped
with the same ladder. This module holds the typed records; the processes are
:mod:`plexa.launch.jobs`, the table :mod:`plexa.nexus.jobs`. See ``docs/jobs.md``.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Literal

import msgspec

__all__ = ["CONFIG_TIMEOUT_S", "JobInfo", "JobSpec", "JobState", "module_problem"]

CONFIG_TIMEOUT_S = 3.0
"""How long a job has to read its configuration from standard input, by default."""

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    STARTING = "starting"
    """Started; its configuration is not read yet."""
    RUNNING = "running"
    """It read its configuration."""
    RESTARTING = "restarting"
    """It ended and its restart policy brings it back after a backoff."""
    EXITED = "exited"
    """It ended with status 0 and is not restarted."""
    FAILED = "failed"
    """It ended otherwise (or missed its deadline) and is not restarted: ``reason`` says why."""
    STOPPED = "stopped"
    """The run stopped it (quit)."""


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One job: which module, its configuration and its restart policy."""

    name: str
    """The job's name (``jobs:`` key; for ``launch``: the module's last part and a number)."""
    module: str
    """The module run with ``python -m``."""
    config: Any = None
    """Written to its standard input as one JSON line."""
    args: tuple[str, ...] = ()
    """More command-line arguments, after ``--guid`` and ``--port``."""
    restart: Literal["never", "on-failure", "always"] = "never"
    """As for actors (:class:`plexa.core.spec.Restart`'s values)."""
    max_restarts: int = 3
    """Restarts allowed within ``restart_window`` seconds."""
    restart_window: float = 60.0
    backoff: float = 0.1
    """Seconds before the first restart, doubling after each."""
    config_timeout: float = CONFIG_TIMEOUT_S
    """Seconds the job has to read its configuration; then it is failed."""


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``plexa ctl NAME jobs`` / ``GET /runs/{name}/jobs``, and a ``job`` event."""

    guid: str
    """The job's id (``--guid``), new for each launch and kept across restarts."""
    name: str
    module: str
    port: int
    """The TCP port it was given (``--port``)."""
    state: JobState
    pid: int | None
    """Its process id; None while it has no process."""
    restarts: int
    session: str
    """The run id it belongs to."""
    reason: str = ""
    """Why it failed or ended, in a sentence ("" while all is well)."""


def module_problem(module: str) -> str:
    """Why ``module`` is not a dotted module name ("" if it is one)."""
    if not isinstance(module, str) or not _MODULE.match(module):
        return f"{module!r} is not a module name (e.g. plexa.examples.job_http)"
    return ""
