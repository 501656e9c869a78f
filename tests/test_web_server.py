"""``plexa server FILE --http PORT``: the HTTP API in a process of its own beside the run,
and a stalled HTTP client that leaves the pipeline's throughput as it was."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import plexa_shm, wait_for
from web_helpers import ENV, ROOT, Web, lines_of, read_banner, stop

pytestmark = pytest.mark.slow
PIPE = """
actors:
  src:    {class: "actors:Source", options: {count: 1000000000, rate_hz: 1000}}
  mid:    {class: "actors:Sink"}
  chatty: {class: "actors:Chatty", options: {every: 0.002}}
connections:
  src.out: [mid.inp]
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Web, subprocess.Popen[str]]]:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    shm_before = plexa_shm()
    name = f"h{os.getpid()}{random.randrange(10**6)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name, "--http", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    try:
        got = read_banner(lines_of(proc), {"url", "token", "token file", "dashboard"})
        site = Web(name, got["url"], got["token"], Path(got["token file"]), got["dashboard"])
        yield site, proc
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not site.token_file.exists()
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    wait_for(lambda: not [p for p in root.iterdir() if name in p.name], 10, "run files removed")
    wait_for(lambda: plexa_shm() <= shm_before, 10, "the run's shared memory to be removed")


def _web_children(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [
        p for p in psutil.Process(proc.pid).children()
        if "web" in p.cmdline() and "plexa" in " ".join(p.cmdline())
    ]  # fmt: skip


def test_the_http_api_is_a_process_of_its_own_that_ends_with_the_run(
    served: tuple[Web, subprocess.Popen[str]],
) -> None:
    web, proc = served
    (child,) = _web_children(proc)
    with web.client() as c:
        wait_for(lambda: c.get(f"/runs/{web.name}/status").json()["run"]["state"] == "running",
                 30, "the run to run")  # fmt: skip
        assert c.get("/").status_code == 200
    proc.terminate()
    proc.wait(30)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def _rate(c: httpx.Client, name: str, seconds: float) -> float:
    """Messages/s taken by ``mid`` over ``seconds``, from two status reads."""
    first = c.get(f"/runs/{name}/status").json()["actors"]["mid"]["msgs_in"]
    t0 = time.monotonic()
    time.sleep(seconds)
    last = c.get(f"/runs/{name}/status").json()["actors"]["mid"]["msgs_in"]
    return (last - first) / (time.monotonic() - t0)


def _pending(sock: socket.socket) -> int:
    import fcntl

    return int(struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0])


def _queued_to(sock: socket.socket) -> int:
    """Bytes the server has written to ``sock`` that TCP could not deliver yet (the server's
    side of the connection, from /proc/net/tcp): > 0 once the stall reached the server."""
    mine = sock.getsockname()[1]
    theirs = sock.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
        if local == theirs and remote == mine:
            return int(fields[4].split(":")[0], 16)
    return 0


@pytest.mark.serial
def test_a_stalled_events_client_leaves_the_throughput_unchanged(
    served: tuple[Web, subprocess.Popen[str]],
) -> None:
    web, _ = served
    host, port = web.url.removeprefix("http://").rsplit(":", 1)
    with web.client() as c:
        wait_for(lambda: c.get(f"/runs/{web.name}/status").json()["run"]["state"] == "running",
                 30, "the run to run")  # fmt: skip
        _rate(c, web.name, 1.0)  # warm up
        baseline = _rate(c, web.name, 3.0)
        assert baseline > 100, baseline
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        try:
            stalled.sendall(
                f"GET /runs/{web.name}/events HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {web.token}\r\n\r\n".encode()
            )
            # the events (chatty logs 500 lines/s) fill our buffer, which nobody reads
            wait_for(lambda: _pending(stalled) >= 2048, 30, "the stalled socket to fill")
            wait_for(lambda: _queued_to(stalled) > 0, 30, "the server's side to back up")
            filled = _pending(stalled)
            during = _rate(c, web.name, 3.0)
            assert _pending(stalled) >= filled, "nothing was read from the stalled socket"
            t0 = time.monotonic()
            assert c.get(f"/runs/{web.name}/status").status_code == 200
            answer_s = time.monotonic() - t0
        finally:
            stalled.close()
    print(f"throughput: baseline {baseline:.0f}/s, with a stalled client {during:.0f}/s")
    assert during > 0.6 * baseline, (baseline, during)
    assert answer_s < 2.0, "other HTTP clients are still answered"


@pytest.mark.allow_leftovers  # it removes them itself, with plexa cleanup
def test_after_kill_9_of_the_server_the_web_process_ends_and_cleanup_leaves_nothing(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    shm_before = plexa_shm()
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    there = set(root.iterdir()) if root.is_dir() else set()
    name = f"h{os.getpid()}{random.randrange(10**6)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name, "--http", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    try:
        read_banner(lines_of(proc), {"url", "token", "token file", "dashboard"})
        (child,) = _web_children(proc)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE,
                 10, "the web process to end with its server")  # fmt: skip
    finally:
        stop(proc)
    r = subprocess.run([sys.executable, "-m", "plexa", "cleanup"], capture_output=True,
                       text=True, env=ENV, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not (set(root.iterdir()) - there), 10, "the run's files removed")
    wait_for(lambda: plexa_shm() <= shm_before, 10, "the run's shared memory removed")
