"""Restart policies and hang detection: what the nexus does when an actor goes down.

The supervisor only decides; the nexus does (spawns, kills, signals). Decisions follow the
actor's spec: ``restart`` (never / on-failure / always), ``max_restarts`` within
``restart_window`` seconds, and an exponential ``backoff`` between restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from plexa.core.lifecycle import ActorState, FailureKind
from plexa.core.spec import ActorSpec, Restart, Settings

__all__ = ["Health", "Supervisor"]


@dataclass
class Health:
    """What the supervisor tracks about one actor."""

    last_seen: float = 0.0
    """When the actor last said anything (heartbeats come every ``heartbeat_interval``)."""
    loops: int = -1
    """Safe points passed, as last reported."""
    loops_changed: float = 0.0
    """When ``loops`` last changed."""
    restarts: list[float] = field(default_factory=list)
    """When each restart happened."""
    restart_at: float | None = None
    """When the pending restart is due, if one is."""


class Supervisor:
    """Applies restart policies and spots hung actors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health: dict[str, Health] = {}

    def of(self, name: str) -> Health:
        """The health record of ``name``."""
        return self.health.setdefault(name, Health())

    def seen(self, name: str, loops: int | None = None) -> None:
        """The actor spoke (a heartbeat carries its safe-point count)."""
        h = self.of(name)
        now = time.monotonic()
        h.last_seen = now
        if loops is not None and loops != h.loops:
            h.loops = loops
            h.loops_changed = now

    def reset(self, name: str) -> None:
        """A new process for ``name``: forget the old one's liveness."""
        h = self.of(name)
        now = time.monotonic()
        h.last_seen = now
        h.loops = -1
        h.loops_changed = now

    def hung(self, name: str, state: ActorState) -> str | None:
        """Why ``name`` counts as hung, or None.

        An actor is hung when its process stops heartbeating (stopped, or frozen), or when
        it is running and passes no safe point for ``hang_timeout`` seconds.
        """
        h = self.of(name)
        now = time.monotonic()
        limit = self.settings.hang_timeout
        if now - h.last_seen > limit:
            return f"no heartbeat for {now - h.last_seen:.1f} s"
        if state is ActorState.RUNNING and h.loops >= 0 and now - h.loops_changed > limit:
            return f"no safe point for {now - h.loops_changed:.1f} s"
        return None

    def restart_delay(self, spec: ActorSpec, kind: FailureKind | None) -> float | None:
        """Seconds until ``spec``'s actor should be restarted, or None to give up.

        ``kind`` is None for an exit that was not a failure (only ``always`` restarts that).
        """
        if spec.restart is Restart.NEVER:
            return None
        if kind is None and spec.restart is not Restart.ALWAYS:
            return None
        h = self.of(spec.name)
        now = time.monotonic()
        recent = [t for t in h.restarts if now - t < spec.restart_window]
        h.restarts = recent
        if len(recent) >= spec.max_restarts:
            return None
        return float(spec.backoff * (2 ** len(recent)))

    def schedule(self, name: str, delay: float) -> None:
        """Note that ``name`` restarts in ``delay`` seconds."""
        self.of(name).restart_at = time.monotonic() + delay

    def due(self) -> list[str]:
        """Actors whose restart is due now."""
        now = time.monotonic()
        return [
            n for n, h in self.health.items() if h.restart_at is not None and h.restart_at <= now
        ]

    def restarted(self, name: str) -> None:
        """The restart of ``name`` began."""
        h = self.of(name)
        h.restart_at = None
        h.restarts.append(time.monotonic())
        self.reset(name)

    def forget_restarts(self, name: str) -> None:
        """``revive``: give ``name`` a fresh restart budget."""
        h = self.of(name)
        h.restarts.clear()
        h.restart_at = None
