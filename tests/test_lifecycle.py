"""The lifecycle: the table in the core, the docs that show it, and long waits that are no hang.

Every wait here is longer than the pipeline's ``hang_timeout`` (1 s) while nothing is wrong:
a pause over lunch must not be a hang.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_stays, plexa_server, started, wait_for
from plexa import Nexus, loads
from plexa.core.lifecycle import (
    ACTOR_EVENTS,
    ACTOR_SIGNALS,
    RUN_SIGNALS,
    ActorState,
    RunState,
    Signal,
    next_state,
    progressing,
    refusal,
    targets,
)
from plexa.edges.client import Client, connect
from plexa.errors import InvalidTransition

ROOT = Path(__file__).resolve().parent.parent
PIPE = """
settings: {hang_timeout: 1.0, heartbeat_interval: 0.1}
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  mid: {class: "actors:Sink"}
connections:
  src.out: [mid.inp]
"""
LONG = 3.0
"""Three hang timeouts."""


# ----- the table ------------------------------------------------------------------------------
def _doc_table(title: str) -> dict[tuple[str, str], str]:
    """The markdown table under heading ``title`` in docs/concepts.md, as (row, column) -> cell."""
    text = (ROOT / "docs" / "concepts.md").read_text()
    section = text.split(f"### {title}", 1)[1]
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))
    header = [c.strip(" `") for c in rows[0].strip("|").split("|")]
    cells: dict[tuple[str, str], str] = {}
    for line in rows[2:]:
        parts = [c.strip(" `") for c in line.strip("|").split("|")]
        for column, cell in zip(header[1:], parts[1:], strict=True):
            if cell and cell != "-":
                cells[(parts[0], column)] = cell
    return cells


def test_the_actor_table_in_the_docs_is_the_table_in_the_code() -> None:
    documented = _doc_table("Actor states and signals")
    coded = {
        (state.value, sig.value): (
            step.enters.value
            if step.enters is step.settles
            else f"{step.enters.value} → {step.settles.value}"
        )
        for (state, sig), step in ACTOR_SIGNALS.items()
    }
    assert documented == coded


def test_the_events_table_in_the_docs_is_the_table_in_the_code() -> None:
    documented = _doc_table("Actor events")
    coded = {(s.value, e.value): to.value for (s, e), to in ACTOR_EVENTS.items()}
    assert documented == coded


def test_the_run_table_in_the_docs_is_the_table_in_the_code() -> None:
    documented = _doc_table("Run states and signals")
    coded = {
        (state.value, sig.value): (
            during.value if during is after else f"{during.value} → {after.value}"
        )
        for (state, sig), (during, after) in RUN_SIGNALS.items()
    }
    assert documented == coded


def test_every_refused_pair_says_why_and_every_accepted_pair_says_nothing() -> None:
    for state in ActorState:
        for sig in Signal:
            why = refusal(state, sig)
            accepted = sig is Signal.QUIT or (state, sig) in ACTOR_SIGNALS
            assert (why is None) == accepted, (state, sig)
            if why is not None:
                assert state.value in why and sig.value in why
            assert (next_state(state, sig) is None) == (why is not None)


def test_a_signal_to_the_run_goes_to_who_takes_it_and_named_actors_must_all_take_it() -> None:
    A = ActorState
    states = {"src": A.RUNNING, "fit": A.PAUSED, "done": A.STOPPED}
    assert targets(states, RunState.RUNNING, Signal.PAUSE, named=False) == ["src"]
    assert targets(states, RunState.RUNNING, Signal.RESUME, named=False) == ["fit"]
    with pytest.raises(InvalidTransition, match=r"pause is not allowed while stopped.*: done"):
        targets(states, RunState.RUNNING, Signal.PAUSE, named=True)
    with pytest.raises(InvalidTransition, match="setup"):  # setup and run: every actor or none
        targets({"a": A.CREATED, "b": A.READY}, RunState.CREATED, Signal.SETUP, named=False)
    with pytest.raises(InvalidTransition, match="while created"):  # nobody takes it: the run says
        targets({"a": A.CREATED}, RunState.CREATED, Signal.PAUSE, named=False)


def test_only_a_running_actor_can_be_hung() -> None:
    assert [s for s in ActorState if progressing(s)] == [ActorState.RUNNING]


def test_abort_leaves_the_run_stopped_like_its_actors() -> None:
    for state in (RunState.RUNNING, RunState.PAUSED):
        assert RUN_SIGNALS[state, Signal.ABORT][1] is RunState.STOPPED
    for state in (ActorState.RUNNING, ActorState.PAUSED):
        assert ACTOR_SIGNALS[state, Signal.ABORT].settles is ActorState.STOPPED


# ----- long waits with real processes -------------------------------------------------------------
class Server:
    """A real ``plexa server`` process and a client of it."""

    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc = proc
        self.name = name
        self.client: Client = connect(name)

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def states(self) -> set[str]:
        return {a["state"] for a in self.status()["actors"].values()}

    def healthy(self, state: str) -> bool:
        """Every actor in ``state``, none restarted, none failed."""
        actors = self.status()["actors"]
        sick = {
            n: a
            for n, a in actors.items()
            if a["state"] != state or a["restarts"] != 0 or "failure" in a
        }
        self.sick = sick
        return not sick


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    with plexa_server(cfg, "lc") as run:
        s = Server(run.proc, run.name)
        try:
            yield s
        finally:
            s.client.close()
    assert run.proc.returncode == 0, run.err


def _flows(s: Server) -> None:
    """Frames keep arriving at the consumer, and nobody failed or restarted."""
    before = s.status()["actors"]["mid"]["msgs_in"]
    wait_for(lambda: s.status()["actors"]["mid"]["msgs_in"] > before + 20, 5, "frames to flow")
    assert s.healthy("running")


@pytest.mark.slow
def test_a_pause_longer_than_the_hang_timeout_is_not_a_hang(server: Server) -> None:
    server.client.request("setup")
    server.client.request("run")
    _flows(server)
    server.client.request("pause")
    assert_stays(lambda: server.healthy("paused"), LONG, "a quiet pause", lambda: server.sick)
    server.client.request("resume")
    assert_stays(
        lambda: server.healthy("running"), 1.5, "running after the pause", lambda: server.sick
    )
    _flows(server)
    assert server.status()["run"]["state"] == "running"


@pytest.mark.slow
def test_a_stop_longer_than_the_hang_timeout_then_run_again(server: Server) -> None:
    server.client.request("setup")
    server.client.request("run")
    server.client.request("stop")
    assert_stays(lambda: server.healthy("stopped"), LONG, "a quiet stop", lambda: server.sick)
    server.client.request("run")
    assert_stays(
        lambda: server.healthy("running"), 1.5, "running after the stop", lambda: server.sick
    )
    _flows(server)


@pytest.mark.slow
def test_held_set_up_and_waiting_longer_than_the_hang_timeout(server: Server) -> None:
    assert_stays(lambda: server.healthy("created"), LONG, "held before setup", lambda: server.sick)
    server.client.request("setup")
    assert_stays(
        lambda: server.healthy("ready"), LONG, "ready, waiting for run", lambda: server.sick
    )
    server.client.request("run")
    assert_stays(
        lambda: server.healthy("running"), 1.5, "running after the wait", lambda: server.sick
    )
    _flows(server)


@pytest.mark.slow
def test_abort_stops_the_run_and_run_starts_it_again(server: Server) -> None:
    server.client.request("setup")
    server.client.request("run")
    server.client.request("abort")
    status = server.status()
    assert status["run"]["state"] == "stopped"
    assert server.states() == {"stopped"}
    assert_stays(
        lambda: server.healthy("stopped"), LONG, "stopped after abort", lambda: server.sick
    )
    server.client.request("run")
    assert server.status()["run"]["state"] == "running"
    _flows(server)


@pytest.mark.slow
def test_a_nexus_stopped_for_three_hang_timeouts_blames_no_actor(server: Server) -> None:
    server.client.request("setup")
    server.client.request("run")
    _flows(server)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        assert_stays(lambda: server.proc.poll() is None, LONG, "the stopped nexus to stay")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert_stays(
        lambda: server.healthy("running"),
        1.5,
        "running after the nexus's stop",
        lambda: server.sick,
    )
    _flows(server)


@pytest.mark.slow
def test_pause_poll_resume_from_python_is_not_a_hang() -> None:
    spec = loads(PIPE, "pipe")
    with started(spec) as nexus:
        nexus.pause()
        nexus.poll(LONG)
        assert not nexus.failures
        nexus.resume()
        nexus.poll(1.5)
        assert not nexus.failures
        assert {a.state for a in nexus.actors.values()} == {ActorState.RUNNING}
        assert nexus.state is RunState.RUNNING


@pytest.mark.slow
def test_a_caller_that_does_not_poll_for_a_while_blames_no_actor() -> None:
    spec = loads(PIPE, "pipe")
    with started(spec) as nexus:
        nexus.poll(0.3)
        time.sleep(LONG)  # the scenario itself: the caller does something else, no polling
        nexus.poll(1.5)
        assert not nexus.failures
        assert isinstance(nexus, Nexus)


def test_a_whole_run_signal_nobody_can_take_is_refused_with_the_run_reason() -> None:
    spec = loads(PIPE, "pipe")
    with Nexus(spec) as nexus:
        nexus.start()
        with pytest.raises(Exception, match=re.escape("pause is not allowed while created")):
            nexus.pause()
        assert nexus.state is RunState.CREATED


def test_get_raises_link_closed_once_the_producer_is_gone_for_good() -> None:
    spec = loads(
        """
settings: {on_failure: continue}
actors:
  src: {class: "actors:Fails", options: {phase: run}}
  dst: {class: "actors:Getter"}
connections:
  src.out: [dst.inp]
""",
        "closed",
    )
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["src"]["state"] == "failed", 10)
        nexus.wait_until(lambda st: "closed" in nexus.store, 10)
        assert nexus.store.get("closed") == 0
        assert nexus.actors["dst"].state is ActorState.RUNNING


# ----- one call from start to report ------------------------------------------------------------
def test_drive_runs_until_a_condition_and_reports_a_clean_quit() -> None:
    from plexa import drive

    spec = loads(PIPE.replace("100000000", "50"), "driven")
    nexus = Nexus(spec)
    link = "src.out->mid.inp"
    outcome = drive(nexus, until=lambda: nexus.status()["links"][link]["received"] >= 50)
    assert outcome.exit_code == 0 and outcome.report.clean and not outcome.interrupted
    assert outcome.status["run"]["state"] == "stopped"
    assert outcome.status["links"][link]["received"] == 50
    assert nexus.state is RunState.QUIT


def test_drive_ends_a_run_whose_actor_failed_for_good_with_exit_code_1() -> None:
    from plexa import drive

    spec = loads(
        """
actors:
  src: {class: "actors:Fails", options: {phase: run}, restart: never}
  dst: {class: "actors:Sink"}
connections:
  src.out: [dst.inp]
""",
        "failing",
    )
    began = time.monotonic()
    outcome = drive(Nexus(spec), duration=60)
    assert time.monotonic() - began < 30, "a failure for good must end the run, not the duration"
    assert outcome.exit_code == 1
    assert outcome.status["run"]["state"] == "failed"
    assert [f.actor for f in outcome.report.failures] == ["src"]
    assert "boom in run" in (outcome.report.failures[0].traceback or "")


def test_drive_held_waits_for_commands_and_a_quit_request_ends_it() -> None:
    from plexa import drive

    nexus = Nexus(loads(PIPE, "held"))
    seen: list[str] = []

    def between() -> None:
        seen.append(nexus.state.value)
        if len(seen) == 5:  # a client's quit, as the control server records it
            nexus.quit_requested = True

    outcome = drive(nexus, hold=True, between=between)
    assert set(seen) == {"created"}, "a held run is started, not set up or running"
    assert outcome.exit_code == 0 and outcome.report.clean
