"""The rules that need no processes, on a clock the test moves: supervision, rate limits,
the stop ladder, option checks. Fast, and exact to the millisecond."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plexa import loads
from plexa.core import messages as msgs
from plexa.core.lifecycle import ActorState, FailureKind, Phase
from plexa.core.options import accepts, option_problem
from plexa.core.paths import RunPaths
from plexa.launch.base import Rung, stop_ladder
from plexa.nexus.fleet import REPORT_GRACE_S, Fleet
from plexa.nexus.logs import LogMerger
from plexa.nexus.supervisor import Supervisor
from plexa.runtime.rates import Limiter

SPEC = loads(
    """
settings: {hang_timeout: 1.0, heartbeat_interval: 0.1}
actors:
  a: {class: "actors:Idle", restart: on-failure, max_restarts: 3, restart_window: 10,
      backoff: 0.5}
  b: {class: "actors:Idle"}
""",
    "rules",
)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def supervised() -> tuple[Supervisor, Clock]:
    clock = Clock()
    sup = Supervisor(SPEC.settings, clock=clock)
    sup.reset("a")
    sup.tick()
    return sup, clock


def beat(sup: Supervisor, clock: Clock, seconds: float, loops: int | None = None) -> None:
    """Heartbeats every 0.1 s for ``seconds`` (with a fixed safe-point count if given)."""
    for _ in range(round(seconds / 0.1)):
        clock.advance(0.1)
        sup.tick()
        sup.seen("a", loops)


# ----- hangs ---------------------------------------------------------------------------------
def test_a_running_actor_without_safe_points_is_hung_after_the_timeout() -> None:
    sup, clock = supervised()
    sup.entered("a", ActorState.RUNNING)
    beat(sup, clock, 0.9, loops=5)
    assert sup.hung("a", ActorState.RUNNING) is None
    beat(sup, clock, 0.3, loops=5)
    assert "no safe point" in (sup.hung("a", ActorState.RUNNING) or "")


@pytest.mark.parametrize(
    "state", [ActorState.PAUSED, ActorState.READY, ActorState.STOPPED, ActorState.SETTING_UP]
)
def test_an_actor_that_is_not_supposed_to_progress_is_never_hung(state: ActorState) -> None:
    sup, clock = supervised()
    beat(sup, clock, 600.0, loops=5)  # ten minutes without a safe point, heartbeats going
    assert sup.hung("a", state) is None


def test_the_hang_clock_starts_again_when_the_actor_runs_again() -> None:
    sup, clock = supervised()
    sup.entered("a", ActorState.RUNNING)
    beat(sup, clock, 0.5, loops=7)
    sup.entered("a", ActorState.PAUSED)
    beat(sup, clock, 8.0, loops=7)  # a long pause: the count does not move
    sup.entered("a", ActorState.RUNNING)
    beat(sup, clock, 0.5, loops=7)
    assert sup.hung("a", ActorState.RUNNING) is None
    beat(sup, clock, 0.7, loops=7)
    assert sup.hung("a", ActorState.RUNNING) is not None


def test_a_silent_process_is_hung_whatever_its_state() -> None:
    sup, clock = supervised()
    for _ in range(12):
        clock.advance(0.1)
        sup.tick()
    assert "no heartbeat" in (sup.hung("a", ActorState.PAUSED) or "")


def test_time_in_which_the_nexus_did_not_run_is_forgiven() -> None:
    sup, clock = supervised()
    sup.entered("a", ActorState.RUNNING)
    beat(sup, clock, 0.5, loops=3)
    clock.advance(30.0)  # SIGSTOP, Ctrl-Z, a VM pause: no tick, no heartbeat read
    sup.tick()
    assert sup.hung("a", ActorState.RUNNING) is None
    assert sup.stalls == 1
    beat(sup, clock, 0.5, loops=4)
    assert sup.hung("a", ActorState.RUNNING) is None


def test_after_a_stall_a_truly_silent_actor_is_still_caught() -> None:
    sup, clock = supervised()
    clock.advance(30.0)
    sup.tick()
    for _ in range(12):  # the loop turns again, but the actor never speaks
        clock.advance(0.1)
        sup.tick()
    assert sup.hung("a", ActorState.RUNNING) is not None


# ----- restarts ------------------------------------------------------------------------------
def test_backoff_doubles_and_max_restarts_in_the_window_gives_up() -> None:
    sup, clock = supervised()
    a = SPEC.actors["a"]
    delays = []
    for _ in range(3):
        delay = sup.restart_delay(a, FailureKind.CRASHED)
        assert delay is not None
        delays.append(delay)
        sup.schedule("a", delay)
        clock.advance(delay)
        assert sup.due() == ["a"]
        sup.restarted("a")
    assert delays == [0.5, 1.0, 2.0]
    assert sup.restart_delay(a, FailureKind.CRASHED) is None
    clock.advance(10.0)  # the window has passed: a fresh budget
    assert sup.restart_delay(a, FailureKind.CRASHED) == 0.5


def test_restart_never_and_a_clean_exit_under_on_failure_are_not_restarted() -> None:
    sup, _ = supervised()
    assert sup.restart_delay(SPEC.actors["b"], FailureKind.EXCEPTION) is None
    assert sup.restart_delay(SPEC.actors["a"], None) is None


def test_the_next_deadline_is_the_earliest_pending_restart() -> None:
    sup, clock = supervised()
    assert sup.next_deadline() is None
    sup.schedule("a", 2.0)
    sup.schedule("b", 1.0)
    assert sup.next_deadline() == clock.now + 1.0
    sup.cancel("b")
    assert sup.next_deadline() == clock.now + 2.0


# ----- rate limits ---------------------------------------------------------------------------
def test_reports_go_out_at_most_once_per_delta_and_the_newest_held_one_wins() -> None:
    clock = Clock()
    sent: list[int] = []
    limiter: Limiter[int] = Limiter(1.0, sent.append, clock=clock)
    limiter.offer(1)
    limiter.offer(2)
    limiter.offer(3)
    assert sent == [1] and limiter.due == clock.now + 1.0
    clock.advance(0.5)
    limiter.tick()
    assert sent == [1]
    clock.advance(0.5)
    limiter.tick()
    assert sent == [1, 3]
    limiter.offer(4)
    limiter.flush()  # at stop: the last report is never lost
    assert sent == [1, 3, 4]
    assert limiter.due == float("inf")


# ----- the stop ladder -------------------------------------------------------------------------
@dataclass(eq=False)
class FakeProcess:
    """Leaves at the first of the signals in ``leaves_on`` (or when asked, if it obeys)."""

    label: str
    obeys: bool = False
    leaves_on: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)
    gone: bool = False
    got: list[signal.Signals] = field(default_factory=list)

    def alive(self) -> bool:
        return not self.gone

    def send(self, sig: signal.Signals) -> None:
        self.got.append(sig)
        if sig in self.leaves_on:
            self.gone = True

    def ask(self) -> bool:
        if self.obeys:
            self.gone = True
        return True


def test_the_ladder_asks_then_terminates_then_kills_and_says_who_needed_what() -> None:
    polite = FakeProcess("polite", obeys=True)
    deaf = FakeProcess("deaf")
    stubborn = FakeProcess("stubborn", leaves_on=(signal.SIGKILL,))
    undying = FakeProcess("undying", leaves_on=())
    waited: list[float] = []
    outcome = stop_ladder(
        [polite, deaf, stubborn, undying],
        ask=lambda p: p.ask(),  # type: ignore[attr-defined]
        grace=0.05,
        kill_grace=0.05,
        wait=waited.append,
    )
    assert outcome.rungs == {
        "polite": Rung.ASKED,
        "deaf": Rung.TERMINATED,
        "stubborn": Rung.KILLED,
        "undying": Rung.LOST,
    }
    assert polite.got == [] and deaf.got == [signal.SIGTERM]
    assert stubborn.got == [signal.SIGTERM, signal.SIGKILL]
    assert waited, "the ladder lets its caller's loop turn while it waits"


def test_a_process_that_cannot_be_asked_gets_sigterm_at_once_and_says_so() -> None:
    starting = FakeProcess("starting")
    outcome = stop_ladder([starting], ask=lambda p: False, grace=1.0)
    assert outcome.rungs == {"starting": Rung.TERMINATED}
    assert outcome.took_s < 0.5


# ----- options -------------------------------------------------------------------------------
def _setup(self: object, rate: float | None = None, n: int = 1, name: str = "x") -> None:
    """An actor's setup, for its annotations."""


def test_one_option_check_for_the_config_and_for_set() -> None:
    assert option_problem(_setup, "rate", "fast") == "must be float | None, not str 'fast'"
    assert option_problem(_setup, "rate", None) is None
    assert option_problem(_setup, "rate", 3) is None
    assert option_problem(_setup, "n", True) is not None  # a bool is no int here
    assert accepts(list[int], (1, 2)) is True
    assert accepts(object, 1) is None  # cannot tell: the actor decides


# ----- status rates --------------------------------------------------------------------------
def test_status_rates_come_from_the_counters_over_the_builders_clock(tmp_path: Path) -> None:
    from plexa.data.counters import Counters, LinkField, OutputField
    from plexa.nexus.status import StatusBuilder, status_document

    spec = loads(
        """
actors:
  a: {class: "actors:Source"}
  b: {class: "actors:Sink"}
connections:
  a.out: [b.inp]
""",
        "rates",
    )
    clock = Clock()
    counters = Counters(spec, tmp_path / "counters", create=True)
    try:
        builder = StatusBuilder(spec, counters, clock=clock)
        run = {"name": "rates", "id": "x", "state": "running", "busy": ""}
        actors = {n: {"state": "running", "pid": None, "restarts": 0} for n in spec.actors}

        def rate() -> float:
            doc = status_document(builder, None, run, actors, False, 1.0)
            return float(doc["links"]["a.out->b.inp"]["rate"])

        rate()  # the first snapshot opens the window
        counters.output_row("a.out")[OutputField.SENT] = 300
        counters.link_row("a.out->b.inp")[LinkField.CONSUMED] = 300
        clock.advance(1.5)
        assert rate() == pytest.approx(200.0)
    finally:
        counters.close()


# ----- an error exit and its failure report ----------------------------------------------------
@dataclass
class ExitedProc:
    """A process that has exited with ``code``."""

    code: int
    pid: int = 4242

    def exit_code(self) -> int:
        return self.code


def exited_fleet(code: int, tmp_path: Path) -> tuple[Fleet, Clock, list[str]]:
    """A fleet whose actor ``a`` has exited with ``code``; what it would decide is logged."""
    sup, clock = supervised()
    events: list[str] = []
    fleet = Fleet(SPEC, RunPaths("0badc0de", tmp_path), None, sup,  # type: ignore[arg-type]
                  LogMerger(tmp_path / "log", lambda *a: None), lambda *a: None)  # fmt: skip
    entry = fleet.entries["a"]
    entry.proc, entry.connected, entry.state = ExitedProc(code), True, ActorState.SETTING_UP  # type: ignore[assignment]
    fleet._on_exit = lambda e, c: events.append(  # type: ignore[method-assign]
        e.failure.kind.value if e.failure else "no report")
    return fleet, clock, events


def test_an_error_exit_waits_for_the_failure_report_that_was_sent_before_it(
    tmp_path: Path,
) -> None:
    fleet, clock, events = exited_fleet(1, tmp_path)
    fleet.check()
    assert events == [], "the exit seen before the report is not judged yet"
    clock.advance(REPORT_GRACE_S / 2)
    fleet.on_message("a", msgs.Failure(FailureKind.EXCEPTION, Phase.SETUP, "boom", "Tb"))
    fleet.check()
    assert events == ["exception"]


def test_an_error_exit_without_a_report_is_a_crash_after_the_grace(tmp_path: Path) -> None:
    fleet, clock, events = exited_fleet(1, tmp_path)
    fleet.check()
    clock.advance(REPORT_GRACE_S - 0.01)
    fleet.check()
    assert events == []
    clock.advance(0.02)
    fleet.check()
    assert events == ["no report"]
    killed, _, at_once = exited_fleet(-signal.SIGKILL, tmp_path)
    killed.check()
    assert at_once == ["no report"], "a signal sends no report: judged at once"
