"""Finding runs and removing what dead ones left behind (``plexa list``, ``plexa cleanup``).

Cleanup removes only what it can prove is a dead plexa run of this user: an entry whose
name follows plexa's naming (``<runid>`` in the runtime root, ``plexa-<runid>`` and
``plx<runid>_*`` in /dev/shm), that belongs to this user, and whose owner record (the run
record, or the shared-memory owner record) names a nexus that is not alive. Anything else,
a directory a user made in the runtime root for instance, is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plexa.core.paths import (
    IOX_PREFIX,
    RUN_DIR_ENV,
    SHM_ROOT,
    RunPaths,
    runtime_root,
    secure_root,
)

if TYPE_CHECKING:
    import psutil

__all__ = ["CleanupReport", "RunInfo", "cleanup", "list_runs", "remove_run_files"]

_RUN_ID = re.compile(r"^[0-9a-f]{8}$")
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


def _create_time(pid: int) -> float | None:
    """When process ``pid`` started (as psutil counts it), read from /proc without psutil
    (``plexa ctl`` finds its run this way and stays fast); None if there is no such process."""
    try:
        lines = Path("/proc/stat").read_bytes().splitlines()
        btime = next(line for line in lines if line.startswith(b"btime"))
    except (OSError, StopIteration):  # no /proc here
        return _psutil_create_time(pid)
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # a process that is gone (the usual case for a finished run's record)
        return None
    fields = stat_line[stat_line.rindex(b")") + 2 :].split()
    return int(btime.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _psutil_create_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _alive(record: dict[str, Any]) -> bool:
    try:
        started = _create_time(int(record["pid"]))
        return started is not None and abs(started - float(record.get("create_time", 0))) < 1.0
    except (KeyError, ValueError, TypeError):
        return False


def _mine(path: Path, kind: int) -> bool:
    """True if ``path`` is (not a link to) a ``kind`` (stat.S_IFDIR/S_IFREG) of this user."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()


def _read(record_file: Path) -> dict[str, Any] | None:
    """A record of this user's (a JSON object in a regular file it owns), or None."""
    if not _mine(record_file, stat.S_IFREG):
        return None
    try:
        data = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or int(data.get("uid", os.geteuid())) != os.geteuid():
        return None
    return data


def list_runs() -> list[RunInfo]:
    """Every run of this user with a record in the runtime directory, alive or not.

    Raises :class:`UnsafePath` if the runtime directory exists but another user could
    control it (its records could then point anywhere)."""
    root = runtime_root()
    if not os.path.lexists(root):
        return []
    secure_root(create=False)
    runs: list[RunInfo] = []
    for run_dir in sorted(root.iterdir()):
        if not _RUN_ID.match(run_dir.name) or not _mine(run_dir, stat.S_IFDIR):
            continue
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


def owner_alive(run_id: str) -> bool:
    """True while the nexus that created run ``run_id``'s shared memory is alive."""
    record = _read(SHM_ROOT / f"plexa-{run_id}" / "owner.json")
    return record is not None and _alive(record)


def _run_alive(run_dir: Path) -> bool:
    """True unless run directory ``run_dir`` (anywhere) is known dead: a live run always
    has a run record or a shared-memory owner record naming its live nexus."""
    record = _read(run_dir / "run.json")
    return (record is not None and _alive(record)) or owner_alive(run_dir.name)


def _run_processes(root: Path, dead: set[str]) -> dict[psutil.Process, str]:
    """This user's processes that belong to a dead run in ``root``: actor processes (argv
    ``-m plexa.runtime.process RUN_DIR ACTOR NEXUS_PID``) whose nexus is gone, and every
    process that inherited an actor's ``PLEXA_RUN_DIR``. Maps each to what it is. Runs of
    another runtime directory are left to a cleanup run with that directory."""
    import psutil

    me = os.getpid()
    skip = {me, *(p.pid for p in psutil.Process(me).parents())}
    found: dict[psutil.Process, str] = {}
    verdicts: dict[str, bool] = {}
    home = os.path.realpath(root)

    def in_root(run_dir: str) -> bool:
        return os.path.realpath(Path(run_dir).parent) == home

    def dead_run(run_dir: str) -> bool:
        if run_dir not in verdicts:
            path = Path(run_dir)
            verdicts[run_dir] = in_root(run_dir) and (
                path.name in dead or (bool(_RUN_ID.match(path.name)) and not _run_alive(path))
            )
        return verdicts[run_dir]

    for proc in psutil.process_iter(["cmdline", "ppid", "uids"]):
        if proc.pid in skip or proc.info["uids"] is None or proc.info["uids"].real != os.getuid():
            continue
        cmd = proc.info.get("cmdline") or []
        if len(cmd) >= 6 and cmd[1] in ("-m", "-c") and "plexa.runtime.process" in cmd[2]:
            with contextlib.suppress(ValueError):
                orphan = proc.info.get("ppid") != int(cmd[5]) and in_root(cmd[3])
                if orphan or dead_run(cmd[3]):
                    found[proc] = f"actor {cmd[4]} of run {Path(cmd[3]).name}"
                    continue
        with contextlib.suppress(psutil.Error):
            run_dir = proc.environ().get(RUN_DIR_ENV)
            if run_dir and dead_run(run_dir):
                found[proc] = f"started by an actor of run {Path(run_dir).name}: {' '.join(cmd)}"
    return found


def _kill(procs: dict[psutil.Process, str], report: CleanupReport) -> None:
    import psutil

    for proc, what in procs.items():
        report.processes.append(f"{proc.pid} ({what})")
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == proc.pid:  # a group leader: its group goes with it
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(procs), timeout=3)


def _dead_runs(root: Path) -> set[str]:
    """Run ids of this user's runs that are proven dead (see the module docstring)."""
    dead: set[str] = set()
    if root.is_dir():
        for run_dir in root.iterdir():
            if not _RUN_ID.match(run_dir.name) or not _mine(run_dir, stat.S_IFDIR):
                continue
            record = _read(run_dir / "run.json")
            if record is not None and not _alive(record) and not owner_alive(run_dir.name):
                dead.add(run_dir.name)
    if SHM_ROOT.is_dir():
        for entry in SHM_ROOT.iterdir():
            match = _SHM_DIR.match(entry.name)
            if match and _mine(entry, stat.S_IFDIR):
                owner = _read(entry / "owner.json")
                if owner is not None and not _alive(owner):
                    dead.add(match.group(1))
                continue
            match = _IOX_FILE.match(entry.name)
            # iceoryx2's files of a run with no live owner record (a live run writes it
            # before anything else) and no live run record
            if match and _mine(entry, stat.S_IFREG) and not _run_alive(root / match.group(1)):
                dead.add(match.group(1))
    return dead


def cleanup() -> CleanupReport:
    """Kill processes and remove shared memory, sockets and name claims of this user's runs
    whose nexus is dead; anything not provably so is left alone.

    Raises :class:`UnsafePath` if the runtime directory exists but another user could
    control it.
    """

    from plexa.nexus.names import remove_stale_claims

    report = CleanupReport()
    root = runtime_root()
    if os.path.lexists(root):
        secure_root(create=False)
    dead = _dead_runs(root)
    _kill(_run_processes(root, dead), report)
    for run_id in sorted(dead):
        if owner_alive(run_id):
            continue
        paths = RunPaths(run_id, root)
        existed = _mine(paths.run_dir, stat.S_IFDIR)
        report.files += remove_run_files(paths)
        if existed:
            report.files.append(str(paths.run_dir))
    if root.is_dir():
        report.files += remove_stale_claims(root)
        report.files += _remove_dead_agents(root)
    _remove_dead_ray(root, report)
    return report


def _remove_dead_ray(root: Path, report: CleanupReport) -> None:
    """What the local Ray instance of a dead run left (``$TMPDIR/plexa-ray-RUNID``: its
    folder, and its agents, which outlive a nexus killed with ``kill -9``)."""
    from plexa.launch.ray_local import TEMP_PREFIX, ray_leftovers, root_of, sweep_ray

    home = os.path.realpath(root)
    for folder, _ in ray_leftovers():
        run_id = folder.name[len(TEMP_PREFIX) :]
        owner = root_of(folder)  # a run of another runtime directory is not this one's
        if not _RUN_ID.match(run_id) or owner not in (None, home) or _run_alive(root / run_id):
            continue
        report.processes += [f"{pid} (Ray of run {run_id})" for pid in sweep_ray(folder)]
        report.files.append(str(folder))


def _remove_dead_agents(root: Path) -> list[str]:
    """The folders (``agent-HOST``: its record and Zenoh socket) of agents that are dead."""
    removed = []
    for entry in root.glob("agent-*"):
        if not _mine(entry, stat.S_IFDIR):
            continue
        record = _read(entry / "agent.json")
        if record is not None and _alive(record):
            continue
        if record is None and time.time() - entry.stat().st_mtime < 10:
            continue  # an agent starting now has not written its record yet
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(str(entry))
    return removed
