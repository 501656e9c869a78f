"""What benchmarks/peers.py needs around the runs: the peers' virtual environments, a quiet
machine, and a watch over every process of a launched peer."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

CACHE = Path(os.environ.get("PLEXA_BENCH_CACHE", Path.home() / ".cache" / "plexa-bench"))
"""Where the peers' virtual environments are made and kept (``venvs/NAME``)."""
QUIET_PCT = 20.0
"""Machine-wide CPU % (all cores) under which the machine counts as quiet."""


def wait_quiet(limit_s: float) -> float:
    """Wait up to ``limit_s`` for the machine to be quiet; returns the last CPU % seen."""
    deadline = time.monotonic() + limit_s
    busy = psutil.cpu_percent(interval=0.1)
    while busy > QUIET_PCT and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=0.1)
    return busy


# ----- virtual environments ------------------------------------------------------------------


def venv_python(
    name: str, pins: tuple[str, ...], base: str, log: Callable[[str], None]
) -> tuple[str, str]:
    """The interpreter for peer ``name``: this one if it has no ``pins``, else that of its
    environment (made with Python ``base``), created if needed.

    Returns ``(python, "")`` or ``("", why it cannot be installed)``.
    """
    if not pins:
        return sys.executable, ""
    env = CACHE / "venvs" / name
    python = env / "bin" / "python"
    if python.exists() and _has_pins(python, pins):
        return str(python), ""
    interpreter = _base_python(base)
    if not interpreter:
        return "", f"needs Python {base}, not found on PATH or in pyenv"
    log(f" creating {env} ({', '.join(pins)}); this can take minutes")
    try:
        if not python.exists():
            subprocess.run([interpreter, "-m", "venv", str(env)], check=True, timeout=300)
        got = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *pins],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return "", f"{type(exc).__name__}: {exc}"
    if got.returncode != 0 or not _has_pins(python, pins):
        lines = [ln for ln in got.stderr.splitlines() if ln.startswith("ERROR")]
        return "", (lines[-1] if lines else f"pip exited {got.returncode}")[:200]
    return str(python), ""


def _base_python(version: str) -> str:
    """An interpreter of Python ``version`` (on PATH or from pyenv), or ""; "" means this one."""
    if not version:
        return sys.executable
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    if pyenv:  # before PATH: pyenv's shim there fails unless that version is selected
        return str(pyenv[-1])
    return shutil.which(f"python{version}") or ""


def _has_pins(python: Path, pins: tuple[str, ...]) -> bool:
    names = [p.split("==")[0] for p in pins]
    code = f"import importlib.metadata as m, sys\nprint(' '.join(m.version(n) for n in {names!r}))"
    got = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    want = " ".join(p.split("==")[1] for p in pins)
    return got.returncode == 0 and got.stdout.strip() == want


# ----- watching a peer's processes -------------------------------------------------------------


class Watch:
    """Every process of one launched peer: its descendants and its session.

    A background thread samples them every 0.5 s: the peak PSS sum, the /dev/shm entries
    they have mapped or open, and every pid ever seen (so that reparented daemons count).
    A descendant that starts a session of its own brings that session in too (improv's
    server does, and its store process outlives it when it fails).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, psutil.Process] = {}
        self.sessions = {root}
        self.peak_pss = 0
        self.most = 0
        self.shm: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def alive(self) -> list[psutil.Process]:
        """The peer's processes now (zombies excluded)."""
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.root)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        for pid in found:
            with contextlib.suppress(OSError):
                self.sessions.add(os.getsid(pid))
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if pid not in found and os.getsid(pid) in self.sessions:
                    with contextlib.suppress(psutil.Error):
                        found[pid] = psutil.Process(pid)
        with self._lock:
            for pid, proc in list(self.seen.items()):
                if pid not in found and _running(proc):
                    found[pid] = proc
            self.seen.update(found)
        return [p for p in found.values() if _running(p)]

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        procs = self.alive()
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().pss
            with contextlib.suppress(psutil.Error, OSError):
                for m in proc.memory_maps(grouped=True):
                    if m.path.startswith("/dev/shm/"):
                        self.shm.add(m.path)
                for f in proc.open_files():
                    if f.path.startswith("/dev/shm/"):
                        self.shm.add(f.path)
        self.peak_pss = max(self.peak_pss, total)
        self.most = max(self.most, len(procs))

    def cpu(self) -> float:
        """CPU seconds (user + system) of the peer's live processes so far."""
        total = 0.0
        for proc in self.alive():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()  # with the children it has reaped
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
