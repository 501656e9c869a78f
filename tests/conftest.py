"""Shared fixtures: an isolated runtime directory, and a check that no test leaks a run."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_RUN_ENTRY = re.compile(r"^(plexa-[0-9a-f]{8}$|plx[0-9a-f]{8}_)")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

os.environ.setdefault("PLEXA_RUNTIME_DIR", f"/tmp/plexa-test-{os.getpid()}")
os.environ.setdefault("PLEXA_LOG_DIR", f"/tmp/plexa-test-logs-{os.getpid()}")


def plexa_shm() -> set[str]:
    """Entries in /dev/shm that plexa runs create."""
    return {p for p in os.listdir("/dev/shm") if _RUN_ENTRY.match(p)}


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``cond()`` is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test must leave /dev/shm and the runtime directory as it found them."""
    before = plexa_shm()
    yield
    if request.node.get_closest_marker("allow_leftovers"):
        return
    wait_for(lambda: plexa_shm() <= before, 5.0, "the run's shared memory to be removed")
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    left = list(root.iterdir()) if root.is_dir() else []
    assert not left, f"runtime directory not cleaned: {left}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leftovers: the test cleans up by itself")
