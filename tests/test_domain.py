"""The run's iceoryx2 domain in one process: wake-ups that wait exactly as long as asked."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

import plexa
from plexa.core.paths import RunPaths
from plexa.data.domain import Wake
from plexa.nexus.rundir import RunResources

SPEC = """
    actors:
      src: {class: "actors:Source"}
      dst: {class: "actors:Counter"}
    connections:
      src.out: [dst.inp]
"""


@pytest.fixture
def wakes() -> Iterator[tuple[Wake, Wake]]:
    spec = plexa.loads(textwrap.dedent(SPEC), source="domain.yaml")
    res = RunResources(RunPaths.for_run(f"dom-{uuid.uuid4().hex[:8]}"), spec)
    src, dst = Wake(res.domain, spec, "src"), Wake(res.domain, spec, "dst")
    try:
        yield src, dst
    finally:
        src.close()
        dst.close()
        res.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [0.0, -1.0, 1e-9, 1e-7])
def test_a_wait_of_no_time_or_almost_none_returns_at_once(
    wakes: tuple[Wake, Wake], timeout: float
) -> None:
    """iceoryx2 reads a duration under a microsecond as no timeout at all: without care, a
    ``put(timeout=...)`` whose deadline had just come blocked until some other wake-up."""
    _, dst = wakes
    began = time.monotonic()
    assert dst.wait(timeout) is False
    assert time.monotonic() - began < 1.0


def test_a_notification_wakes_a_waiter_and_is_taken_once(wakes: tuple[Wake, Wake]) -> None:
    src, dst = wakes
    src.notifier("dst").notify()
    began = time.monotonic()
    assert dst.wait(5.0) is True
    assert time.monotonic() - began < 1.0
    assert dst.wait(0) is False  # taken: nothing left
    began = time.monotonic()
    assert dst.wait(0.05) is False  # a real wait, that ends
    assert 0.04 <= time.monotonic() - began < 1.0
