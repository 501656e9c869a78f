"""A real ``plexa server`` run with a real ``plexa web`` in front of it, for the web tests."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from conftest import plexa_shm, wait_for
from plexa.edges.client import connect

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}


@dataclass
class Web:
    """A served run: its name, the server's URL and token."""

    name: str
    url: str
    token: str
    token_file: Path
    dashboard: str = ""
    """The dashboard URL ``plexa web`` printed (with ``#token=...``)."""

    def client(self, token: str | None = "") -> httpx.Client:
        tok = self.token if token == "" else token
        headers = {} if tok is None else {"Authorization": f"Bearer {tok}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``proc`` prints, read by a thread."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not end within 30 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def read_banner(lines: queue.Queue[str], keys: set[str]) -> dict[str, str]:
    """The ``key: value`` lines a server prints at start, until every one of ``keys``."""
    got: dict[str, str] = {}
    while not keys <= set(got):
        key, _, value = lines.get(timeout=30).partition(": ")
        got[key] = value
    return got


@contextlib.contextmanager
def serve_web(cfg: Path) -> Iterator[Web]:
    """``plexa server CFG --hold`` and ``plexa web`` on an OS-chosen port; at the end both
    are stopped and the run must have left nothing behind."""
    shm_before = plexa_shm()
    name = f"w{os.getpid()}{random.randrange(10**6)}"
    server = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name, "--hold"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    front: subprocess.Popen[str] | None = None
    try:

        def up() -> bool:
            try:
                with connect(name) as c:
                    return not c.status()["run"]["busy"]
            except Exception:
                return False

        wait_for(up, 30, "the server to answer")
        front = subprocess.Popen(
            [sys.executable, "-m", "plexa", "web", name, "--port", "0"],
            stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
        )  # fmt: skip
        got = read_banner(lines_of(front), {"url", "token", "token file", "dashboard"})
        site = Web(name, got["url"], got["token"], Path(got["token file"]), got["dashboard"])
        yield site
        stop(front)
        assert not site.token_file.exists(), "the token file is removed when the server ends"
    finally:
        if front is not None:
            stop(front)
        if server.poll() is None:
            try:
                with connect(name) as c:
                    c.request("quit")
            except Exception:
                server.terminate()
        server.communicate(timeout=30)
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    run_dir = site.token_file.parent
    wait_for(lambda: not [p for p in root.iterdir() if name in p.name or p == run_dir],
             10, "the run's files to be removed")  # fmt: skip
    wait_for(lambda: plexa_shm() <= shm_before, 10, "the run's shared memory to be removed")
