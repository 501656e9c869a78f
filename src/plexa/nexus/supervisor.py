"""Restart policies and hang detection: what the nexus does when an actor goes down.

The supervisor only decides; the nexus does (spawns, kills, signals). Decisions follow the
actor's spec: ``restart`` (never / on-failure / always), ``max_restarts`` within
``restart_window`` seconds, and an exponential ``backoff`` between restarts.

What counts as a hang (``docs/supervision.md``): a process that sends no heartbeat for
``hang_timeout`` seconds, or an actor that is supposed to make progress (``running``) and
passes no safe point for ``hang_timeout`` seconds *of running*. Time spent paused, stopped,
ready, held, or setting up never counts (the clock restarts when the actor enters
``running``), and neither does time in which the nexus itself was not running (SIGSTOP,
Ctrl-Z, a VM pause): such a gap moves every clock forward before anyone is judged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from plexa.core.lifecycle import ActorState, FailureKind, progressing
from plexa.core.spec import ActorSpec, Restart, Settings

__all__ = ["Health", "Supervisor"]

Clock = Callable[[], float]


@dataclass
class Health:
    """What the supervisor tracks about one actor."""

    last_seen: float = 0.0
    """When the actor last said anything (heartbeats come every ``heartbeat_interval``)."""
    loops: int = -1
    """Safe points passed, as last reported."""
    loops_changed: float = 0.0
    """When ``loops`` last changed, or the actor last entered ``running``."""
    restarts: list[float] = field(default_factory=list)
    """When each restart happened."""
    restart_at: float | None = None
    """When the pending restart is due, if one is."""


class Supervisor:
    """Applies restart policies and spots hung actors, on the clock it is given."""

    def __init__(self, settings: Settings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.health: dict[str, Health] = {}
        self._last_tick: float | None = None
        self.stalls = 0
        """How often the nexus itself was found not to have run for a while."""

    def of(self, name: str) -> Health:
        """The health record of ``name``."""
        return self.health.setdefault(name, Health())

    def tick(self) -> float:
        """Called on every turn of the nexus's loop and right before judging hangs: time in
        which the loop did not turn for longer than a heartbeat interval plus a margin is
        nobody's fault, and is forgiven (every clock starts again); returns the gap."""
        now = self.clock()
        last, self._last_tick = self._last_tick, now
        if last is None:
            return 0.0
        gap = now - last
        allowance = max(1.0, 4 * self.settings.heartbeat_interval)
        if gap <= allowance:
            return 0.0
        self.stalls += 1
        for h in self.health.values():  # a full hang_timeout from now, for everyone
            h.last_seen = max(h.last_seen, now)
            h.loops_changed = max(h.loops_changed, now)
        return gap

    def seen(self, name: str, loops: int | None = None) -> None:
        """The actor spoke (a heartbeat carries its safe-point count)."""
        h = self.of(name)
        now = self.clock()
        h.last_seen = now
        if loops is not None and loops != h.loops:
            h.loops = loops
            h.loops_changed = now

    def entered(self, name: str, state: ActorState) -> None:
        """``name`` is now in ``state``: entering a progressing state starts its clock."""
        if progressing(state):
            self.of(name).loops_changed = self.clock()

    def reset(self, name: str) -> None:
        """A new process for ``name``: forget the old one's liveness."""
        h = self.of(name)
        now = self.clock()
        h.last_seen = now
        h.loops = -1
        h.loops_changed = now

    def hung(self, name: str, state: ActorState) -> str | None:
        """Why ``name`` counts as hung, or None (see the module docstring)."""
        h = self.of(name)
        now = self.clock()
        limit = self.settings.hang_timeout
        if now - h.last_seen > limit:
            return f"no heartbeat for {now - h.last_seen:.1f} s"
        if progressing(state) and h.loops >= 0 and now - h.loops_changed > limit:
            return f"no safe point for {now - h.loops_changed:.1f} s while running"
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
        now = self.clock()
        recent = [t for t in h.restarts if now - t < spec.restart_window]
        h.restarts = recent
        if len(recent) >= spec.max_restarts:
            return None
        return float(spec.backoff * (2 ** len(recent)))

    def schedule(self, name: str, delay: float) -> None:
        """Note that ``name`` restarts in ``delay`` seconds."""
        self.of(name).restart_at = self.clock() + delay

    def cancel(self, name: str) -> None:
        """Forget ``name``'s pending restart (the run is ending)."""
        self.of(name).restart_at = None

    def due(self) -> list[str]:
        """Actors whose restart is due now."""
        now = self.clock()
        return [
            n for n, h in self.health.items() if h.restart_at is not None and h.restart_at <= now
        ]

    def next_deadline(self) -> float | None:
        """The next moment something may be due (a restart), on the supervisor's clock."""
        times = [h.restart_at for h in self.health.values() if h.restart_at is not None]
        return min(times) if times else None

    def restarted(self, name: str) -> None:
        """The restart of ``name`` began."""
        h = self.of(name)
        h.restart_at = None
        h.restarts.append(self.clock())
        self.reset(name)

    def forget_restarts(self, name: str) -> None:
        """``revive``: give ``name`` a fresh restart budget."""
        h = self.of(name)
        h.restarts.clear()
        h.restart_at = None
