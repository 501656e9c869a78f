"""What a local Ray instance started for a run needs: a private token, and a way to find
and remove what it left behind (see :mod:`plexa.launch.ray`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "AUTH_MODE_ENV",
    "AUTH_TOKEN_ENV",
    "RAY_DIR_ENV",
    "TEMP_PREFIX",
    "mark_instance",
    "mark_root",
    "private_token",
    "ray_leftovers",
    "restore_env",
    "root_of",
    "sweep_ray",
]

TEMP_PREFIX = "plexa-ray-"
"""Local Ray instances keep their files in ``$TMPDIR/plexa-ray-RUNID`` (sockets, logs)."""
RAY_DIR_ENV = "PLEXA_RAY_DIR"
"""Set while plexa starts a local Ray instance: every process of it carries the folder."""
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"


def mark_instance(folder: Path) -> dict[str, str | None]:
    """Mark the processes of the Ray instance about to be started from here with ``folder``
    (``PLEXA_RAY_DIR``), so that :func:`sweep_ray` finds them all. Returns what to give
    :func:`restore_env` afterwards."""
    saved = {RAY_DIR_ENV: os.environ.get(RAY_DIR_ENV)}
    os.environ[RAY_DIR_ENV] = str(folder)
    return saved


ROOT_MARK = "plexa-root"
"""A file in the folder naming the runtime directory of the run that started the instance:
``plexa cleanup`` with another runtime directory leaves it alone."""


def mark_root(folder: Path, root: Path) -> None:
    """Record in ``folder`` that the Ray instance belongs to a run in runtime root ``root``."""
    (folder / ROOT_MARK).write_text(os.path.realpath(root))


def root_of(folder: Path) -> str | None:
    """The runtime root recorded by :func:`mark_root` in ``folder``, or None."""
    try:
        return (folder / ROOT_MARK).read_text()
    except OSError:
        return None


def private_token() -> dict[str, str | None]:
    """Have the Ray instances started from here authenticate with a fresh token held in
    this process's environment (inherited by Ray's processes) instead of one Ray would
    write to ``~/.ray``. Returns what to give :func:`restore_env` afterwards."""
    saved = {k: os.environ.get(k) for k in (AUTH_MODE_ENV, AUTH_TOKEN_ENV)}
    os.environ[AUTH_MODE_ENV] = "token"
    os.environ[AUTH_TOKEN_ENV] = secrets.token_hex(32)
    _reread_config()
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    """Put back the environment variables :func:`private_token` changed."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if saved:
        _reread_config()


def _reread_config() -> None:
    with contextlib.suppress(Exception):  # Ray caches its config: have it read the mode again
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")


def _users_of(folder: Path) -> list[int]:
    """Pids of this user's processes (but this one) of the Ray instance in ``folder``: their
    command line names it, or they carry ``PLEXA_RAY_DIR=folder`` (Ray's agents rename
    themselves, but keep the environment of the nexus that started them)."""
    import psutil

    marker = str(folder)
    mark = f"{RAY_DIR_ENV}={folder}".encode()
    pids = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.info["uids"].real != os.getuid() or proc.pid == os.getpid():
                continue
            if any(marker in arg for arg in proc.info["cmdline"]):
                pids.append(proc.pid)
                continue
        with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/environ", "rb") as fh:
            if mark in fh.read().split(b"\0"):
                pids.append(proc.pid)
    return pids


def ray_leftovers(run_id: str | None = None) -> Iterator[tuple[Path, list[int]]]:
    """Local Ray folders of plexa runs (of ``run_id``, or all) and the pids of this user's
    processes still using each (a nexus killed with ``kill -9`` leaves Ray's agents)."""
    root = Path(tempfile.gettempdir())
    pattern = f"{TEMP_PREFIX}{run_id}" if run_id else f"{TEMP_PREFIX}*"
    for folder in root.glob(pattern):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_uid == os.getuid():
                yield folder, _users_of(folder)


def sweep_ray(folder: Path, grace: float = 3.0) -> list[int]:
    """End every process of the Ray instance whose files are in ``folder`` (SIGTERM, then
    SIGKILL after ``grace``) and remove the folder, also what a process that was ending
    wrote there afterwards. Returns the pids signalled."""
    import psutil

    pids = _users_of(folder)
    live = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.terminate()
            live.append(proc)
    _, still = psutil.wait_procs(live, timeout=grace)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=grace)
    deadline = time.monotonic() + grace
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)  # a process that was ending may still write its last log line
        if not folder.exists():
            break
    return pids
