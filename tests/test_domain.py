"""The run's iceoryx2 domain in one process: wake-ups that wait exactly as long as asked, and
a link's accounting when its consumer is replaced."""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

import plexa
from plexa.core.paths import RunPaths
from plexa.data import holds
from plexa.data.counters import LinkField
from plexa.data.domain import Wake
from plexa.data.inputs import make_sub
from plexa.data.links import OutputPort
from plexa.nexus.rundir import RunResources

SPEC = """
    actors:
      src: {class: "actors:Source"}
      dst: {class: "actors:Counter"}
    connections:
      src.out: {to: [dst.inp], policy: block, capacity: 4}
"""


class Run:
    """A run's resources in this process, and each actor's wake-up."""

    def __init__(self) -> None:
        self.spec = plexa.loads(textwrap.dedent(SPEC), source="domain.yaml")
        self.res = RunResources(RunPaths.for_run(f"dom-{uuid.uuid4().hex[:8]}"), self.spec)
        self.src = Wake(self.res.domain, self.spec, "src")
        self.dst = Wake(self.res.domain, self.spec, "dst")

    def close(self) -> None:
        self.src.close()
        self.dst.close()
        self.res.close()


@pytest.fixture
def run() -> Iterator[Run]:
    made = Run()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def wakes(run: Run) -> tuple[Wake, Wake]:
    return run.src, run.dst


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


def test_a_message_sent_while_a_dead_queue_is_counted_is_dropped_not_lost(run: Run) -> None:
    """The race behind a CI failure: a ``block`` producer past its hold check sends message N
    after the nexus counted the dead consumer's queue (``holds.release``) and before the new
    subscriber exists. N reached nobody; it is dropped with the dead queue, never ``lost``."""
    spec, res = run.spec, run.res
    (link,) = spec.links
    row = res.counters.link_row(link.name)
    service = res.domain.output_service(spec, link.output)
    out = OutputPort("out", "src", [link], service, res.counters, run.src, lambda t: None)
    subs = [make_sub(link, res.domain, spec, res.counters, run.dst)]
    try:
        out.put(1)
        out.put(2)
        assert subs[0].take() == 1
        subs.pop().close()  # the consumer dies with message 2 in its queue
        holds.hold(res.counters, spec, "dst")
        holds.release(res.counters, spec, "dst")
        row[LinkField.HOLD] = 0  # the producer was past its check when the hold came
        out.put(3)  # ... and sends to nobody
        subs.append(make_sub(link, res.domain, spec, res.counters, run.dst))
        out.put(4)
        assert subs[0].take() == 4
        out.put(5)
        assert subs[0].take() == 5
        assert (int(row[LinkField.DROPPED]), int(row[LinkField.LOST])) == (2, 0)
    finally:
        for sub in subs:
            sub.close()
        out.close()
