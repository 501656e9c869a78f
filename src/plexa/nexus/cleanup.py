"""Finding runs and removing what dead ones left behind (``plexa list``, ``plexa cleanup``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from plexa.core.paths import IOX_PREFIX, SHM_ROOT, RunPaths, runtime_root
from plexa.launch.local import sweep

__all__ = ["CleanupReport", "RunInfo", "cleanup", "list_runs", "remove_run_files"]

_SHM_DIR = re.compile(r"^plexa-([0-9a-f]{8})$")
_IOX_FILE = re.compile(rf"^{IOX_PREFIX}([0-9a-f]{{8}})_")


@dataclass(frozen=True)
class RunInfo:
    """A run found in the runtime directory."""

    run_id: str
    name: str
    pid: int
    alive: bool
    config: str
    started: float
    record: dict[str, Any]


@dataclass
class CleanupReport:
    """What ``cleanup`` removed."""

    processes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.files)


def _rm(path: Path) -> bool:
    if not os.path.lexists(path):
        return False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
    return True


def remove_run_files(paths: RunPaths) -> list[str]:
    """Remove every file of run ``paths``; returns the shared-memory entries removed."""
    removed = [str(p) for p in sorted(SHM_ROOT.glob(paths.iox_prefix + "*")) if _rm(p)]
    if _rm(paths.shm_dir):
        removed.append(str(paths.shm_dir))
    _rm(paths.run_dir)
    return removed


def _alive(record: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record.get("create_time", 0))) < 1.0
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def _read(record_file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_runs() -> list[RunInfo]:
    """Every run with a record in the runtime directory, alive or not."""
    root = runtime_root()
    runs: list[RunInfo] = []
    if not root.is_dir():
        return runs
    for run_dir in sorted(root.iterdir()):
        record = _read(run_dir / "run.json")
        if record is None:
            continue
        runs.append(
            RunInfo(
                run_id=run_dir.name,
                name=str(record.get("name", "")),
                pid=int(record.get("pid", 0)),
                alive=_alive(record),
                config=str(record.get("config", "")),
                started=float(record.get("started", 0.0)),
                record=record,
            )
        )
    return runs


def _orphaned_actors() -> dict[str, list[psutil.Process]]:
    """Actor processes whose nexus is gone, by run id (argv: RUN_DIR ACTOR NEXUS_PID)."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmd = proc.info.get("cmdline") or []
        if len(cmd) >= 6 and cmd[1:3] == ["-m", "plexa.runtime.process"]:
            with contextlib.suppress(ValueError):
                if proc.info.get("ppid") != int(cmd[5]):
                    found.setdefault(Path(cmd[3]).name, []).append(proc)
    return found


def owner_alive(run_id: str) -> bool:
    """True while the nexus that created run ``run_id``'s shared memory is alive."""
    record = _read(SHM_ROOT / f"plexa-{run_id}" / "owner.json")
    return record is not None and _alive(record)


def cleanup() -> CleanupReport:
    """Remove processes, shared memory and socket files of runs whose nexus is dead.

    Liveness comes from each run's own records (its run record, and the owner record in its
    shared-memory directory), so runs of other users or other runtime directories are left
    alone while their nexus lives.
    """
    report = CleanupReport()
    for run_id, procs in _orphaned_actors().items():
        for proc in procs:
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                name = proc.cmdline()[4]
                os.killpg(proc.pid, signal.SIGKILL)
                report.processes.append(f"{proc.pid} (actor {name} of run {run_id})")
        psutil.wait_procs(procs, timeout=3)
    root = runtime_root()
    dead_ids: set[str] = set()
    if root.is_dir():
        for run_dir in root.iterdir():
            record = _read(run_dir / "run.json")
            if run_dir.is_dir() and not (record is not None and _alive(record)):
                dead_ids.add(run_dir.name)
    if SHM_ROOT.is_dir():
        for entry in SHM_ROOT.iterdir():
            match = _SHM_DIR.match(entry.name) or _IOX_FILE.match(entry.name)
            if match and not owner_alive(match.group(1)):
                dead_ids.add(match.group(1))
    for run_id in sorted(dead_ids):
        if owner_alive(run_id):
            continue
        for pid in sweep(run_id):  # what its actors started and left (their mark proves it)
            report.processes.append(f"{pid} (started by an actor of run {run_id})")
        paths = RunPaths(run_id, root)
        existed = paths.run_dir.exists()
        report.files += remove_run_files(paths)
        if existed:
            report.files.append(str(paths.run_dir))
    return report
