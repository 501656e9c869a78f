"""Supervision with real processes: crashes, hangs, restarts, revive, bounded memory."""

from __future__ import annotations

import os
import signal
import textwrap

import psutil
import pytest

import plexa
from conftest import started, wait_for
from plexa import ActorState, FailureKind, Nexus


def spec_of(text: str) -> plexa.PipelineSpec:
    return plexa.loads(textwrap.dedent(text), source="supervision.yaml")


def drive_until(nexus: Nexus, cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Drive the nexus until ``cond()``; returns the seconds it took."""
    return wait_for(cond, timeout, what, step=lambda: nexus.poll(0.005))


PIPE = """
    actors:
      src: {{class: "actors:Source", options: {{count: 100000000, rate_hz: 500}}}}
      mid: {{class: "actors:Relay", restart: on-failure, max_restarts: 3, backoff: 0.1}}
      dst: {{class: "actors:Counter"}}
    connections:
      src.out: {{to: [mid.inp], policy: {policy}, capacity: 8}}
      mid.out: [dst.inp]
"""


@pytest.mark.parametrize("policy", ["block", "drop_oldest"])
def test_a_killed_mid_actor_is_detected_fast_and_back_running_within_two_seconds(
    policy: str,
) -> None:
    with Nexus(spec_of(PIPE.format(policy=policy))) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > 100, 10)
        mid = nexus.actors["mid"]
        assert mid.proc is not None
        os.killpg(mid.proc.pid, signal.SIGKILL)
        detect = drive_until(nexus, lambda: mid.failure is not None, 2, "the kill to be noticed")
        assert detect <= 0.5
        assert mid.failure is not None and mid.failure.kind is FailureKind.KILLED
        back = drive_until(nexus, lambda: mid.state is ActorState.RUNNING, 3, "mid to run again")
        assert detect + back <= 2.0
        assert mid.restarts == 1
        before = nexus.status()["actors"]["dst"]["msgs_in"]
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > before + 100, 10)
        nexus.stop()
        link = nexus.status()["links"]["src.out->mid.inp"]
    assert link["lost"] == 0
    assert link["sent"] == link["received"] + link["dropped"]
    if policy == "drop_oldest":
        assert link["dropped"] > 0  # what was sent while mid was down
    report = nexus.failure_report()
    assert report["actors"]["mid"]["restarts"] == 1
    assert report["actors"]["mid"]["failures"][0]["kind"] == "killed"


def test_a_stopped_process_is_reported_hung_within_the_configured_time() -> None:
    spec = spec_of("""
        settings: {hang_timeout: 0.5}
        actors:
          src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
          dst: {class: "actors:Counter"}
        connections:
          src.out: [dst.inp]
    """)
    with started(spec) as nexus:
        dst = nexus.actors["dst"]
        assert dst.proc is not None
        os.kill(dst.proc.pid, signal.SIGSTOP)
        took = drive_until(nexus, lambda: dst.failure is not None, 3, "the hang to be noticed")
        assert dst.failure is not None and dst.failure.kind is FailureKind.HUNG
        assert took <= 0.5 + 0.3
        drive_until(nexus, lambda: dst.state is ActorState.FAILED, 3, "dst to be marked failed")
        report = nexus.quit()
    assert report.failed == ("dst",)
    assert report.exit_code == 1


def test_max_restarts_is_honoured_then_the_actor_fails_for_good() -> None:
    spec = spec_of("""
        settings: {on_failure: continue}
        actors:
          bad: {class: "actors:Fails", options: {phase: run}, restart: on-failure,
                max_restarts: 2, backoff: 0.05}
    """)
    with started(spec) as nexus:
        bad = nexus.actors["bad"]
        drive_until(nexus, lambda: bad.state is ActorState.FAILED, 15, "bad to give up")
        assert bad.restarts == 2
        assert [f.kind for f in nexus.failures] == [FailureKind.EXCEPTION] * 3
        assert all(f.phase.value == "run" for f in nexus.failures)


def test_revive_brings_back_a_failed_actor_and_it_runs_again() -> None:
    spec = spec_of("""
        settings: {on_failure: continue}
        actors:
          src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
          dst: {class: "actors:Counter"}
        connections:
          src.out: {to: [dst.inp], policy: block}
    """)
    with started(spec) as nexus:
        dst = nexus.actors["dst"]
        nexus.kill("dst")
        assert dst.state is ActorState.FAILED  # restart: never
        with pytest.raises(plexa.InvalidTransition, match="not failed"):
            nexus.revive("src")
        nexus.revive("dst")
        assert dst.state is ActorState.RUNNING and dst.restarts == 1
        before = nexus.status()["actors"]["dst"]["msgs_in"]
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > before + 20, 10)
        nexus.stop()
        link = nexus.status()["links"]["src.out->dst.inp"]
    assert link["lost"] == 0 and link["sent"] == link["received"] + link["dropped"]


def test_a_lossless_publisher_resumes_after_its_subscriber_is_sigkilled() -> None:
    spec = spec_of("""
        actors:
          src: {class: "actors:Source", options: {count: 100000000, size: 65536}}
          dst: {class: "actors:Counter", restart: on-failure}
        connections:
          src.out: {to: [dst.inp], policy: block, capacity: 4}
    """)
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] > 200, 10)
        dst = nexus.actors["dst"]
        assert dst.proc is not None
        os.killpg(dst.proc.pid, signal.SIGKILL)
        drive_until(
            nexus,
            lambda: dst.state is ActorState.RUNNING and dst.restarts == 1,
            5,
            "dst to come back",
        )
        sent = nexus.status()["links"]["src.out->dst.inp"]["sent"]
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["sent"] > sent + 500, 10)
        nexus.stop()
        link = nexus.status()["links"]["src.out->dst.inp"]
    assert link["lost"] == 0
    assert link["dropped"] <= 4 + 1  # at most what the dead subscriber's queue held


def test_kill_on_request_is_reported_and_the_policy_applies() -> None:
    spec = spec_of("""
        actors:
          a: {class: "actors:Chatty", restart: always, backoff: 0.05}
    """)
    with started(spec) as nexus:
        nexus.kill("a")
        a = nexus.actors["a"]
        drive_until(nexus, lambda: a.state is ActorState.RUNNING, 5, "a to be restarted")
        assert nexus.failures[0].kind is FailureKind.KILLED
        assert nexus.failures[0].error == "killed on request"
        report = nexus.quit()
    assert report.exit_code == 3  # every failure was recovered


def _rss(nexus: Nexus) -> int:
    total = 0
    for actor in nexus.actors.values():
        if actor.proc is not None:
            total += psutil.Process(actor.proc.pid).memory_info().rss
    shm = nexus.paths.iox_prefix
    total += sum(
        os.stat(os.path.join("/dev/shm", f)).st_blocks * 512
        for f in os.listdir("/dev/shm")
        if f.startswith(shm)
    )
    return total


def test_memory_stays_flat_under_overload_with_every_policy() -> None:
    spec = spec_of("""
        actors:
          a: {class: "actors:Source", options: {count: 100000000, size: 65536, rate_hz: 2000}}
          b: {class: "actors:Source", options: {count: 100000000, size: 65536, rate_hz: 2000}}
          c: {class: "actors:Source", options: {count: 100000000, size: 65536, rate_hz: 2000}}
          slow_a: {class: "actors:Counter", options: {delay: 0.01}}
          slow_b: {class: "actors:Counter", options: {delay: 0.01}}
          slow_c: {class: "actors:Counter", options: {delay: 0.01}}
        connections:
          a.out: {to: [slow_a.inp], policy: block, capacity: 16}
          b.out: {to: [slow_b.inp], policy: drop_oldest, capacity: 16}
          c.out: {to: [slow_c.inp], policy: latest, capacity: 16}
    """)
    with started(spec) as nexus:
        nexus.poll(3.0)  # warm-up: every queue is full from here on
        early = _rss(nexus)
        nexus.poll(12.0)  # thousands of 64 KB messages per link: a leak of any would show
        late = _rss(nexus)
        status = nexus.status()
        nexus.stop()
    assert status["links"]["b.out->slow_b.inp"]["dropped"] > 1000
    assert status["links"]["c.out->slow_c.inp"]["dropped"] > 1000
    assert late - early < 16 * 2**20, f"grew by {(late - early) / 2**20:.1f} MiB"


def test_a_short_stop_below_the_hang_timeout_is_not_a_failure() -> None:
    spec = spec_of("""
        settings: {hang_timeout: 2.0}
        actors:
          src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
          dst: {class: "actors:Counter"}
        connections:
          src.out: [dst.inp]
    """)
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > 20, 10)
        for actor in nexus.actors.values():
            assert actor.proc is not None
            os.killpg(actor.proc.pid, signal.SIGSTOP)
        nexus.poll(0.4)
        for actor in nexus.actors.values():
            assert actor.proc is not None
            os.killpg(actor.proc.pid, signal.SIGCONT)
        before = nexus.status()["actors"]["dst"]["msgs_in"]
        nexus.wait_until(lambda st: st["actors"]["dst"]["msgs_in"] > before + 50, 10)
        assert nexus.failures == []

