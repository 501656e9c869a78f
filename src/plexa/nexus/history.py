"""Runs after they end: their logs and reports, found by run name or id, and pruned.

Every run leaves ``NAME-ID.log`` (the merged log) and ``NAME-ID.report.json`` (how it ended)
in :func:`~plexa.core.paths.log_dir` (see :func:`~plexa.core.paths.run_log`). ``plexa logs``,
``plexa report`` and ``plexa list --all`` read them here.

Pruning rule (:func:`prune`, applied when a run starts): the files of the newest
:data:`KEEP_RUNS` runs are kept, and of those only the ones younger than
:data:`KEEP_DAYS` days; ``PLEXA_LOG_KEEP`` (runs) and ``PLEXA_LOG_KEEP_DAYS`` change the two.
A run that is still alive is never pruned. :meth:`plexa.nexus.nexus.Nexus.start` applies it,
so runs started from Python are pruned like those of ``plexa run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plexa.core.paths import log_dir, parse_run_file
from plexa.nexus.cleanup import list_runs

__all__ = ["KEEP_DAYS", "KEEP_RUNS", "FinishedRun", "finished_runs", "latest", "prune"]

KEEP_RUNS = 50
"""Runs whose log and report are kept (the newest)."""
KEEP_DAYS = 30.0
"""Logs and reports older than this many days are removed."""


@dataclass(frozen=True)
class FinishedRun:
    """A run known by the files it left in the log directory."""

    name: str
    """The run's name."""
    run_id: str
    """The run's id."""
    log: Path | None
    """Its merged log, if it wrote one."""
    report: Path | None
    """Its report, if it wrote one (a run whose nexus was killed has none)."""
    mtime: float
    """When its files were last written (seconds since the epoch)."""

    def load_report(self) -> dict[str, Any] | None:
        """The report document, or None."""
        if self.report is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.report.read_text())
            return data if isinstance(data, dict) else None
        return None

    def exit_state(self) -> str:
        """``clean``, ``recovered`` (failures, every one restarted), ``failed``, or
        ``unknown`` (no report: the nexus was killed)."""
        report = self.load_report()
        if report is None:
            return "unknown"
        run = report.get("run", {})
        if run.get("failed"):
            return "failed"
        return "clean" if run.get("clean") else "recovered"


def finished_runs(directory: Path | None = None) -> list[FinishedRun]:
    """Every run with files in the log directory, oldest first."""
    root = log_dir() if directory is None else directory
    found: dict[tuple[str, str], dict[str, Any]] = {}
    if not root.is_dir():
        return []
    for path in root.iterdir():
        key = parse_run_file(path)
        if key is None:
            continue
        entry = found.setdefault(key, {"log": None, "report": None, "mtime": 0.0})
        entry["report" if path.name.endswith(".report.json") else "log"] = path
        with contextlib.suppress(OSError):
            entry["mtime"] = max(entry["mtime"], path.stat().st_mtime)
    runs = [FinishedRun(name, run_id, **entry) for (name, run_id), entry in found.items()]
    return sorted(runs, key=lambda r: r.mtime)


def latest(name: str, directory: Path | None = None) -> FinishedRun | None:
    """The newest run called ``name`` (or with run id ``name``)."""
    runs = [r for r in finished_runs(directory) if name in (r.name, r.run_id)]
    return runs[-1] if runs else None


def prune(
    keep: int | None = None, days: float | None = None, directory: Path | None = None
) -> list[Path]:
    """Remove the files of runs beyond the newest ``keep`` or older than ``days``; returns
    what was removed."""
    keep = int(os.environ.get("PLEXA_LOG_KEEP", KEEP_RUNS)) if keep is None else keep
    if days is None:
        days = float(os.environ.get("PLEXA_LOG_KEEP_DAYS", KEEP_DAYS))
    live: set[str] = set()
    with contextlib.suppress(Exception):  # a live run's log is still being written
        live = {r.run_id for r in list_runs() if r.alive}
    runs = [r for r in finished_runs(directory) if r.run_id not in live]
    cutoff = time.time() - days * 86400
    kept = runs[len(runs) - keep :] if keep > 0 else []
    old = runs[: len(runs) - len(kept)] + [r for r in kept if r.mtime < cutoff]
    removed = []
    for run in old:
        for path in (run.log, run.report):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed
