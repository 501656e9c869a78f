"""Shared fixtures: an isolated runtime directory, and a check that no test leaks a run."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

HERE = Path(__file__).parent
_RUN_ENTRY = re.compile(r"^(plexa-([0-9a-f]{8})$|plx([0-9a-f]{8})_)")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""``gw0``, ``gw1``... under ``pytest -n N``: each worker gets its own folders, so its
leftover checks and ``plexa cleanup`` see only its own runs."""
_OURS = {
    "PLEXA_RUNTIME_DIR": f"/tmp/plexa-test-{os.getpid()}{_WORKER}",
    "PLEXA_LOG_DIR": f"/tmp/plexa-test-logs-{os.getpid()}{_WORKER}",
}
"""This session's runtime and log folders (unless the caller chose others): removed at the end."""
if _WORKER and os.environ.get("PLEXA_RUNTIME_DIR", "").startswith("/tmp/plexa-test-"):
    os.environ.update(_OURS)  # not the folders the controlling process chose for itself
_OURS = {k: v for k, v in _OURS.items() if os.environ.setdefault(k, v) == v}


def plexa_shm() -> set[str]:
    """Entries in /dev/shm of this test session's runs (or of no known run: leaks).

    Runs of other sessions on the machine (another checkout's tests, a benchmark) carry
    another runtime root in their owner record and are left out.
    """
    root = os.environ["PLEXA_RUNTIME_DIR"]
    found = set()
    for entry in os.listdir("/dev/shm"):
        match = _RUN_ENTRY.match(entry)
        if not match:
            continue
        owner = Path("/dev/shm") / f"plexa-{match.group(2) or match.group(3)}" / "owner.json"
        try:
            if json.loads(owner.read_text()).get("root") != root:
                continue
        except (OSError, ValueError):
            pass
        found.add(entry)
    return found


def started(spec: Any, **kw: Any) -> Any:
    """A nexus for ``spec``, started, set up and running (quit again if any of that fails)."""
    from plexa import Nexus

    nexus = Nexus(spec, **kw)
    try:
        nexus.start()
        nexus.setup()
        nexus.run()
    except BaseException:
        nexus.quit()
        raise
    return nexus


@dataclass
class ServerRun:
    """A real ``plexa server --hold`` process started by :func:`plexa_server`."""

    proc: subprocess.Popen[str]
    name: str
    err: str = ""
    """Its stderr, once it has ended."""


@contextlib.contextmanager
def plexa_server(config: Path, prefix: str = "t", up_s: float = 20) -> Iterator[ServerRun]:
    """Run ``plexa server CONFIG --hold`` until the block ends (then ``quit`` it, or
    terminate it if it does not answer); yields once a client gets its status (within
    ``up_s`` seconds)."""
    from plexa.edges.client import connect

    name = f"{prefix}{os.getpid()}{random.randrange(10**6)}"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(config), "--name", name, "--hold"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=HERE.parent,
    )

    def up() -> bool:
        try:
            with connect(name) as c:
                return not c.status()["run"]["busy"]
        except Exception:
            return False

    run = ServerRun(proc, name)
    try:
        wait_for(up, up_s, "the server to answer")
        yield run
    finally:
        if proc.poll() is None:
            try:
                with connect(name) as c:
                    c.request("quit")
            except Exception:
                proc.terminate()
        run.err = proc.communicate(timeout=30)[1]


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, or a pid gone between two looks, is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(
    cond: Callable[[], object],
    timeout: float = 5.0,
    what: str = "condition",
    step: Callable[[], object] = lambda: time.sleep(0.01),
) -> float:
    """Wait until ``cond()`` is true, or fail after ``timeout`` seconds; returns the seconds
    it took. ``step`` is what to do between looks (drive a nexus: ``lambda: nexus.poll(0.005)``).
    """
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        step()
    return time.monotonic() - start


def settled(value: Callable[[], object], quiet: float = 0.3, timeout: float = 10.0) -> object:
    """Wait until ``value()`` has not changed for ``quiet`` seconds; returns it."""
    last = [value(), time.monotonic()]

    def still() -> bool:
        now = value()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - float(last[1]) >= quiet  # type: ignore[arg-type]

    wait_for(still, timeout, "the value to settle")
    return last[0]


def assert_stays(
    cond: Callable[[], object],
    seconds: float,
    what: str = "condition",
    why: Callable[[], object] = lambda: "",
) -> None:
    """Check ``cond()`` again and again for ``seconds``; fail the moment it is false.

    The way to test that nothing goes wrong while time passes (a pause longer than a
    timeout), instead of sleeping and looking once. ``why()`` is shown when it fails.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cond(), f"{what} stopped holding {why()}"
        time.sleep(0.02)
    assert cond(), f"{what} stopped holding {why()}"


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test must leave /dev/shm and the runtime directory as it found them (a test
    that leaks fails alone: the next ones compare with what was there before them)."""
    before = plexa_shm()
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    there = set(root.iterdir()) if root.is_dir() else set()
    yield
    if request.node.get_closest_marker("allow_leftovers"):
        return
    wait_for(lambda: plexa_shm() <= before, 5.0, "the run's shared memory to be removed")
    left = (set(root.iterdir()) if root.is_dir() else set()) - there
    assert not left, f"runtime directory not cleaned: {sorted(left)}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the folders this session made for its runs (nothing left behind)."""
    for folder in _OURS.values():
        shutil.rmtree(folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leftovers: the test cleans up by itself")
    config.addinivalue_line(
        "markers", "slow: a long end-to-end test (skip locally with -m 'not slow'; CI runs all)"
    )


FIRST = ("test_ray_cluster.py", "test_ray.py", "test_lifecycle.py", "test_hosts.py", "test_tui.py")
"""The longest modules (by summed test time), started first: on xdist workers, where each module
runs on one worker, a long module taken last would keep one worker busy after the others."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: order kept
