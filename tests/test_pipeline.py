"""End-to-end pipelines with real processes and real shared memory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plexa
from conftest import started, wait_for
from plexa import ActorState, InvalidTransition, Nexus


def spec_of(text: str) -> plexa.PipelineSpec:
    return plexa.loads(textwrap.dedent(text), source="test.yaml")


def run_to_end(
    spec: plexa.PipelineSpec, until: str, count: int, timeout: float = 20.0
) -> tuple[dict[str, Any], Nexus]:
    """Run until actor ``until`` has taken ``count`` messages, stop, and return the status."""
    nexus = Nexus(spec)
    with nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda st: st["actors"][until]["msgs_in"] >= count, timeout)
        nexus.stop()
        status = nexus.status()
        results = {k: nexus.store.get(k) for k in nexus.store.keys() if k.startswith("result:")}
    status["results"] = results
    return status, nexus


def test_a_block_link_delivers_every_message_in_order() -> None:
    spec = spec_of("""
        actors:
          src: {class: "actors:Source", options: {count: 2000}}
          dst: {class: "actors:Sink", options: {delay: 0.0002}}
        connections:
          src.out: {to: [dst.inp], policy: block, capacity: 4}
    """)
    status, _ = run_to_end(spec, "dst", 2000)
    link = status["links"]["src.out->dst.inp"]
    assert (link["sent"], link["received"], link["dropped"], link["lost"]) == (2000, 2000, 0, 0)
    assert status["results"]["result:dst"]["seen"] == list(range(2000))


@pytest.mark.parametrize("policy", ["drop_oldest", "latest"])
def test_drop_policies_count_every_drop(policy: str) -> None:
    spec = spec_of(f"""
        actors:
          src: {{class: "actors:Source", options: {{count: 3000}}}}
          dst: {{class: "actors:Sink", options: {{delay: 0.001}}}}
        connections:
          src.out: {{to: [dst.inp], policy: {policy}, capacity: 2}}
    """)
    nexus = Nexus(spec)
    with nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda st: st["actors"]["src"]["msgs_out"] >= 3000, 20)
        nexus.stop()
        status = nexus.status()
        seen = nexus.store.get("result:dst")["seen"]
    link = status["links"]["src.out->dst.inp"]
    assert link["sent"] == 3000
    assert link["dropped"] > 0
    assert link["received"] + link["dropped"] == 3000
    assert link["lost"] == 0
    assert len(seen) == link["received"]
    assert seen == sorted(seen)
    assert seen[-1] == 2999  # the newest message is never the one dropped


def test_fan_out_and_fan_in_deliver_to_every_consumer() -> None:
    spec = spec_of("""
        actors:
          a: {class: "actors:Source", options: {count: 300}}
          b: {class: "actors:Source", options: {count: 200}}
          x: {class: "actors:Sink"}
          y: {class: "actors:Sink"}
        connections:
          a.out: [x.inp, y.inp]
          b.out: [x.inp]
    """)
    status, _ = run_to_end(spec, "x", 500)
    assert status["actors"]["x"]["msgs_in"] == 500
    assert status["links"]["a.out->y.inp"]["received"] == 300
    seen_x = status["results"]["result:x"]["seen"]
    assert sorted(seen_x) == sorted(list(range(300)) + list(range(200)))
    assert status["results"]["result:y"]["seen"] == list(range(300))


@pytest.mark.parametrize("loan", [False, True])
def test_arrays_arrive_as_read_only_views_into_shared_memory(loan: bool) -> None:
    spec = spec_of(f"""
        actors:
          src:
            class: "actors:Source"
            options: {{count: 20, size: 524288, loan: {str(loan).lower()}}}
          dst: {{class: "actors:Sink"}}
        connections:
          src.out: [dst.inp]
    """)
    status, _ = run_to_end(spec, "dst", 20)
    result = status["results"]["result:dst"]
    assert result["seen"] == list(range(20))
    for view in result["views"]:
        assert view["mapping"].startswith("/dev/shm/plx"), view
        assert view["writeable_flag"] is False
        assert view["writable"] is False


def test_every_kind_of_payload_arrives_equal() -> None:
    from actors import payloads

    spec = spec_of("""
        actors:
          src: {class: "actors:Payloads"}
          dst: {class: "actors:Copier"}
        connections:
          src.out: [dst.inp]
    """)
    sent = payloads()
    status, _ = run_to_end(spec, "dst", len(sent))
    result = status["results"]["result:dst"]
    assert len(result["got"]) == len(sent)
    for want, got in zip(sent, result["got"], strict=True):
        assert type(got) is type(want)
        if isinstance(want, np.ndarray):
            assert (got.dtype, got.shape) == (want.dtype, want.shape)
            assert np.array_equal(got, want)
        elif isinstance(want, dict):
            assert got.keys() == want.keys() and np.array_equal(got["arr"], want["arr"])
            assert (got["n"], got["text"]) == (want["n"], want["text"])
        elif isinstance(want, list):
            assert np.array_equal(got[0], want[0]) and got[1] == want[1]
        else:
            assert got == want
    assert not any(result["writeable"])


def test_a_kept_view_never_shows_another_message() -> None:
    spec = spec_of("""
        actors:
          src: {class: "actors:Source", options: {count: 200, size: 4096}}
          dst: {class: "actors:Keeper"}
        connections:
          src.out: {to: [dst.inp], capacity: 2}
    """)
    status, _ = run_to_end(spec, "dst", 200)
    assert status["results"]["result:dst"] == [0, 1, 0, 1]


def test_run_is_refused_until_every_actor_is_ready() -> None:
    spec = spec_of("""
        actors:
          src: {class: "actors:Source"}
          dst: {class: "actors:Sink"}
        connections:
          src.out: [dst.inp]
    """)
    with Nexus(spec) as nexus:
        nexus.start()
        with pytest.raises(
            InvalidTransition, match=r"run is not allowed while created .*: src, dst"
        ):
            nexus.run()
        nexus.setup()
        with pytest.raises(InvalidTransition):
            nexus.setup()
        with pytest.raises(InvalidTransition, match="pause is not allowed while ready"):
            nexus.pause()
        nexus.run()
        nexus.pause()
        assert {a.state for a in nexus.actors.values()} == {ActorState.PAUSED}
        with pytest.raises(InvalidTransition, match="not allowed while paused"):
            nexus.pause()
        nexus.resume()
        nexus.stop()
        assert {a.state for a in nexus.actors.values()} == {ActorState.STOPPED}
        nexus.run()  # run can follow stop
        assert {a.state for a in nexus.actors.values()} == {ActorState.RUNNING}
        report = nexus.quit()
    assert report.clean
    assert sorted(report.graceful) == ["dst", "src"]


def test_pause_holds_messages_and_resume_continues() -> None:
    spec = spec_of("""
        actors:
          src: {class: "actors:Source", options: {count: 100000, rate_hz: 500}}
          dst: {class: "actors:Sink"}
        connections:
          src.out: [dst.inp]
    """)
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > 10, 10)
        nexus.pause()
        before = nexus.status()["actors"]["dst"]["msgs_in"]
        nexus.poll(0.3)
        assert nexus.status()["actors"]["dst"]["msgs_in"] == before
        nexus.resume()
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > before + 10, 10)


@pytest.mark.parametrize("phase", ["setup", "run", "stop"])
def test_an_exception_in_actor_code_is_reported_with_phase_and_traceback(phase: str) -> None:
    spec = spec_of(f"""
        actors:
          bad: {{class: "actors:Fails", options: {{phase: {phase}}}}}
          ok: {{class: "actors:Sink"}}
        connections:
          bad.out: [ok.inp]
    """)
    nexus = Nexus(spec)
    with nexus:
        nexus.start()
        try:
            nexus.setup()
            nexus.run()
            nexus.wait_until(lambda st: bool(nexus.failures), 3.0 if phase != "stop" else 0.3)
        except (plexa.ActorFailed, plexa.Timeout):
            pass
        if phase == "stop":
            with pytest.raises(plexa.ActorFailed, match="boom in stop"):
                nexus.stop()
    [failure] = nexus.failures
    assert failure.actor == "bad"
    assert failure.kind is plexa.FailureKind.EXCEPTION
    assert failure.phase.value == phase
    assert f"ValueError: boom in {phase}" in failure.traceback
    assert "actors.py" in failure.traceback


def test_quit_walks_the_ladder_for_an_actor_stuck_in_user_code() -> None:
    spec = spec_of("""
        settings: {stop_timeout: 0.5, drain_timeout: 0.2}
        actors:
          stuck: {class: "actors:Stubborn"}
    """)
    lines: list[str] = []
    with started(spec, on_log=lambda actor, rec: lines.append(rec.message)) as nexus:
        wait_for(lambda: "stuck in user code" in lines, 10, "user code", lambda: nexus.poll(0.01))
        report = nexus.quit()
    assert report.terminated == ("stuck",)
    assert not report.clean
    written = json.loads(Path(report.report).read_text())["run"]
    assert written["clean"] is False and not written["failed"]  # the file says the same
