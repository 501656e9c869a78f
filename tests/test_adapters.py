"""improv compatibility, async actors, and the in-process test harness."""

from __future__ import annotations

import numpy as np
import pytest

import plexa
from conftest import started
from plexa.examples.imaging import RoiTraces
from plexa.examples.minimal import Generator, Processor
from plexa.testing import ActorHarness


def test_improvs_minimal_pipeline_runs_in_improvs_spelling() -> None:
    spec = plexa.load("examples/minimal.yaml")
    assert spec.links[0].name == "Generator.q_out->Processor.q_in"
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["Processor"]["msgs_in"] >= 30, 20)
        nexus.stop()
        link = nexus.status()["links"]["Generator.q_out->Processor.q_in"]
    assert link["sent"] == link["received"] and link["lost"] == 0


def test_an_improv_actor_runs_in_the_harness_with_its_store_client() -> None:
    gen = ActorHarness(Generator, name="Generator")
    gen.setup()
    gen.step(3)
    messages = gen.sent["q_out"]
    assert [m[0][1] for m in messages] == ["0", "1", "2"]
    proc = ActorHarness(Processor, name="Processor")
    proc.store = gen.store
    proc.actor.client = type(gen.actor.client)(gen.store)  # type: ignore[misc]
    proc.setup()
    for message in messages:
        proc.send("q_in", message)
        proc.step()
    assert proc.actor.frame_num == 3  # type: ignore[attr-defined]


def test_improv_q_in_get_raises_queue_empty_on_timeout() -> None:
    import queue

    proc = ActorHarness(Processor, name="Processor")
    assert proc.actor.q_in is not None  # type: ignore[attr-defined]
    with pytest.raises(queue.Empty):
        proc.actor.q_in.get(timeout=0.01)  # type: ignore[attr-defined]


def test_the_harness_delivers_read_only_arrays_and_collects_outputs() -> None:
    h = ActorHarness(RoiTraces, options={"n_rois": 4, "size": 8})
    h.setup()
    frame = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    h.send("frames", frame)
    [traces] = h.sent["traces"]
    assert traces.shape == (4,) and traces.dtype == np.float32
    assert not traces.flags.writeable


def test_an_async_actor_sends_and_stops_when_its_run_returns() -> None:
    spec = plexa.loads(
        """
        actors:
          tick: {class: "actors:Ticker", options: {count: 40}}
          sink: {class: "actors:Sink"}
        connections:
          tick.out: [sink.inp]
        """,
        source="async.yaml",
    )
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["sink"]["msgs_in"] >= 40, 20)
        nexus.wait_until(lambda st: st["actors"]["tick"]["state"] == "stopped", 5)
        nexus.stop()
        assert nexus.store.get("result:sink")["seen"] == list(range(40))


def test_an_async_actor_pauses_at_its_checkpoint() -> None:
    spec = plexa.loads(
        """
        actors:
          tick: {class: "actors:Ticker", options: {count: 100000}}
          sink: {class: "actors:Sink"}
        connections:
          tick.out: [sink.inp]
        """,
        source="async.yaml",
    )
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["sink"]["msgs_in"] >= 5, 20)
        nexus.pause(["tick"])
        held = nexus.status()["actors"]["tick"]["msgs_out"]
        nexus.poll(0.2)
        assert nexus.status()["actors"]["tick"]["msgs_out"] == held
        nexus.resume(["tick"])
        nexus.wait_until(lambda st: st["actors"]["tick"]["msgs_out"] > held, 5)
