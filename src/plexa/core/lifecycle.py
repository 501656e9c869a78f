"""Lifecycle states, signals and failure kinds: the names every edge shows."""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "ActorState", "FailureKind", "Phase", "Signal", "next_state"]


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


class Signal(enum.StrEnum):
    """Lifecycle signals the nexus sends; each is applied at the actor's next safe point."""

    SETUP = "setup"
    RUN = "run"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    QUIT = "quit"
    ABORT = "abort"


class FailureKind(enum.StrEnum):
    """How an actor failed."""

    EXCEPTION = "exception"
    """User code raised; a traceback is attached."""
    CRASHED = "crashed"
    """The process exited on its own with a non-zero code or a signal it raised itself."""
    KILLED = "killed"
    """The process was killed from outside (SIGKILL, OOM killer)."""
    HUNG = "hung"
    """The process stopped heartbeating or stayed inside user code too long."""


class Phase(enum.StrEnum):
    """The part of the lifecycle in which something happened."""

    SPAWN = "spawn"
    SETUP = "setup"
    RUN = "run"
    STOP = "stop"


TRANSITIONS: dict[tuple[ActorState, Signal], ActorState] = {
    (ActorState.CREATED, Signal.SETUP): ActorState.READY,
    (ActorState.READY, Signal.RUN): ActorState.RUNNING,
    (ActorState.STOPPED, Signal.RUN): ActorState.RUNNING,
    (ActorState.RUNNING, Signal.PAUSE): ActorState.PAUSED,
    (ActorState.PAUSED, Signal.RESUME): ActorState.RUNNING,
    (ActorState.RUNNING, Signal.STOP): ActorState.STOPPED,
    (ActorState.PAUSED, Signal.STOP): ActorState.STOPPED,
    (ActorState.READY, Signal.STOP): ActorState.STOPPED,
}
"""Where each accepted signal leads; any (state, signal) pair not listed is refused.

``quit`` is accepted in every state and always ends the process.
"""


def next_state(state: ActorState, signal: Signal) -> ActorState | None:
    """Return the state ``signal`` leads to from ``state``, or None if it is refused."""
    if signal is Signal.QUIT:
        return ActorState.EXITED
    return TRANSITIONS.get((state, signal))
