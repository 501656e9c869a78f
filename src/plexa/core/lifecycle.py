"""The lifecycle, written once: states, signals, failure kinds and the tables between them.

Every part of plexa that needs to know whether a signal is allowed, where it leads, or what a
run's state is looks it up here: the runtime inside the actor, the nexus's commands, the
control server, the CLI and the TUI. ``docs/concepts.md`` shows the same tables; a test
compares them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from plexa.errors import InvalidTransition

__all__ = [
    "ACTOR_EVENTS",
    "ACTOR_SIGNALS",
    "ALL_OR_NOTHING",
    "RUN_SIGNALS",
    "ActorEvent",
    "ActorState",
    "FailureKind",
    "Phase",
    "RunState",
    "Signal",
    "Step",
    "next_state",
    "progressing",
    "refusal",
    "run_refusal",
    "targets",
]


class ActorState(enum.StrEnum):
    """Where an actor is in its lifecycle."""

    CREATED = "created"
    SETTING_UP = "setting_up"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    RESTARTING = "restarting"
    EXITED = "exited"


class RunState(enum.StrEnum):
    """Where the whole run is: what the nexus last drove every actor to."""

    CREATED = "created"
    SETTING_UP = "setting_up"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    """An actor failed for good (shown over the driven state)."""
    QUIT = "quit"


class Signal(enum.StrEnum):
    """Lifecycle signals the nexus sends; each is applied at the actor's next safe point."""

    SETUP = "setup"
    RUN = "run"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    ABORT = "abort"
    QUIT = "quit"


class ActorEvent(enum.StrEnum):
    """What moves an actor without a signal: its own progress, or its process's fate."""

    SET_UP = "set_up"
    """``setup()`` returned."""
    DRAINED = "drained"
    """Stopping finished: queued inputs handled (or discarded on abort), ``stop()`` returned."""
    ERROR = "error"
    """It failed: user code raised, the process crashed, was killed, or hung."""
    EXIT = "exit"
    """The process ended by itself, with status 0."""
    RESTART = "restart"
    """A restart was scheduled."""
    RESPAWN = "respawn"
    """A new process was started for a restart."""


class FailureKind(enum.StrEnum):
    """How an actor failed."""

    EXCEPTION = "exception"
    """User code raised; a traceback is attached."""
    CRASHED = "crashed"
    """The process exited on its own with a non-zero code or a signal it raised itself."""
    KILLED = "killed"
    """The process was killed from outside (SIGKILL, OOM killer)."""
    HUNG = "hung"
    """The process stopped heartbeating, or passed no safe point for ``hang_timeout`` while
    it was supposed to make progress."""
    TIMEOUT = "timeout"
    """It did not get ready (or did not stop) within the deadline it was given."""
    HOST_LOST = "host_lost"
    """The host it ran on left the run (its agent died, or the network to it was cut)."""


class Phase(enum.StrEnum):
    """The part of the lifecycle in which something happened."""

    SPAWN = "spawn"
    SETUP = "setup"
    RUN = "run"
    STOP = "stop"


class Step(NamedTuple):
    """Where an accepted signal leads: the state entered at once, and the state it settles in."""

    enters: ActorState
    settles: ActorState


_S, _A = Signal, ActorState

ACTOR_SIGNALS: dict[tuple[ActorState, Signal], Step] = {
    (_A.CREATED, _S.SETUP): Step(_A.SETTING_UP, _A.READY),
    (_A.READY, _S.RUN): Step(_A.RUNNING, _A.RUNNING),
    (_A.STOPPED, _S.RUN): Step(_A.RUNNING, _A.RUNNING),
    (_A.READY, _S.STOP): Step(_A.STOPPED, _A.STOPPED),
    (_A.RUNNING, _S.PAUSE): Step(_A.PAUSED, _A.PAUSED),
    (_A.PAUSED, _S.RESUME): Step(_A.RUNNING, _A.RUNNING),
    (_A.RUNNING, _S.STOP): Step(_A.STOPPING, _A.STOPPED),
    (_A.PAUSED, _S.STOP): Step(_A.STOPPING, _A.STOPPED),
    (_A.RUNNING, _S.ABORT): Step(_A.STOPPING, _A.STOPPED),
    (_A.PAUSED, _S.ABORT): Step(_A.STOPPING, _A.STOPPED),
}
"""(actor state, signal) -> step. Any pair not listed is refused, except ``quit``, which is
accepted in every state and ends the process (``exited``)."""

_LIVE = (
    _A.CREATED,
    _A.SETTING_UP,
    _A.READY,
    _A.RUNNING,
    _A.PAUSED,
    _A.STOPPING,
    _A.STOPPED,
)

ACTOR_EVENTS: dict[tuple[ActorState, ActorEvent], ActorState] = {
    (_A.SETTING_UP, ActorEvent.SET_UP): _A.READY,
    (_A.STOPPING, ActorEvent.DRAINED): _A.STOPPED,
    **{(state, ActorEvent.ERROR): _A.FAILED for state in _LIVE},
    **{(state, ActorEvent.EXIT): _A.EXITED for state in _LIVE},
    (_A.FAILED, ActorEvent.RESTART): _A.RESTARTING,
    (_A.EXITED, ActorEvent.RESTART): _A.RESTARTING,
    (_A.RESTARTING, ActorEvent.RESPAWN): _A.CREATED,
}
"""(actor state, event) -> state, for what happens without a signal. ``error`` is any
failure (an exception, a crash, a kill, a hang); ``exit`` is a process that ended by itself
with status 0. The restart policy then may move a failed or exited actor on (``restart``)."""

_R = RunState

RUN_SIGNALS: dict[tuple[RunState, Signal], tuple[RunState, RunState]] = {
    (_R.CREATED, _S.SETUP): (_R.SETTING_UP, _R.READY),
    (_R.READY, _S.RUN): (_R.RUNNING, _R.RUNNING),
    (_R.STOPPED, _S.RUN): (_R.RUNNING, _R.RUNNING),
    (_R.RUNNING, _S.PAUSE): (_R.PAUSED, _R.PAUSED),
    (_R.PAUSED, _S.RESUME): (_R.RUNNING, _R.RUNNING),
    (_R.READY, _S.STOP): (_R.STOPPING, _R.STOPPED),
    (_R.RUNNING, _S.STOP): (_R.STOPPING, _R.STOPPED),
    (_R.PAUSED, _S.STOP): (_R.STOPPING, _R.STOPPED),
    (_R.RUNNING, _S.ABORT): (_R.STOPPING, _R.STOPPED),
    (_R.PAUSED, _S.ABORT): (_R.STOPPING, _R.STOPPED),
}
"""(run state, signal) -> (state while the signal is carried out, state after), for a
signal sent to every actor. ``quit`` ends the run from any state."""

_PROGRESSING = frozenset({_A.RUNNING})


def next_state(state: ActorState, signal: Signal) -> ActorState | None:
    """The state ``signal`` settles ``state`` in, or None if it is refused."""
    if signal is Signal.QUIT:
        return ActorState.EXITED
    step = ACTOR_SIGNALS.get((state, signal))
    return step.settles if step is not None else None


def refusal(state: ActorState, signal: Signal) -> str | None:
    """Why ``signal`` is refused in ``state`` (one line), or None if it is accepted."""
    if signal is Signal.QUIT or (state, signal) in ACTOR_SIGNALS:
        return None
    allowed = sorted({st.value for (st, sig) in ACTOR_SIGNALS if sig is signal})
    return f"{signal.value} is not allowed while {state.value} (only while {' or '.join(allowed)})"


def run_refusal(state: RunState, signal: Signal) -> str | None:
    """Why ``signal`` to the whole run is refused in run state ``state``, or None."""
    if signal is Signal.QUIT or (state, signal) in RUN_SIGNALS:
        return None
    allowed = sorted({st.value for (st, sig) in RUN_SIGNALS if sig is signal})
    only = " or ".join(allowed)
    return f"{signal.value} is not allowed while {state.value} (only while {only})"


ALL_OR_NOTHING = frozenset({Signal.SETUP, Signal.RUN})
"""Signals that, sent to the whole run, need every actor to accept them."""


def targets(
    states: Mapping[str, ActorState], run: RunState, signal: Signal, named: bool
) -> list[str]:
    """The actors of ``states`` that ``signal`` goes to, as the tables allow.

    ``named``: the caller chose these actors, so every one must accept ``signal``. Sent to
    the whole run, setup and run need every actor too; the other signals go to those that
    accept them, and are refused only if none does. Raises :class:`InvalidTransition` with
    every reason, changing nothing.
    """
    refused: dict[str, list[str]] = {}
    for name, state in states.items():
        why = refusal(state, signal)
        if why is not None:
            refused.setdefault(why, []).append(name)
    text = "; ".join(f"{why}: {', '.join(who)}" for why, who in refused.items())
    if named or signal in ALL_OR_NOTHING:
        if refused:
            raise InvalidTransition(text)
        return list(states)
    accepted = [n for n in states if not any(n in who for who in refused.values())]
    if not accepted:
        raise InvalidTransition(run_refusal(run, signal) or text)
    return accepted


def progressing(state: ActorState) -> bool:
    """Whether an actor in ``state`` is supposed to pass safe points (so can be hung).

    Paused, stopped, ready, setting-up (the setup deadline covers it) and held actors are
    never hung; only a running actor's silence counts.
    """
    return state in _PROGRESSING


def settled_run_state(states: Iterable[ActorState], driven: RunState) -> RunState:
    """The run state to show: ``failed`` if an actor failed for good, else the driven one."""
    return RunState.FAILED if ActorState.FAILED in set(states) else driven
