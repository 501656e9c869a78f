"""The actor table: each actor's process, state and failures, and what happens when one dies.

The fleet spawns actor processes through a launcher, follows what they report (handshake,
state changes, failures, heartbeats), notices exits and hangs, and carries out the
supervisor's decisions: hold the links of a dead consumer, restart it after its backoff, or
give it up. It never decides whether a lifecycle signal is allowed: that is the nexus's,
from the lifecycle table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from plexa.core import messages as msgs
from plexa.core.lifecycle import (
    ACTOR_EVENTS,
    ActorEvent,
    ActorState,
    FailureKind,
    Phase,
    RunState,
    Signal,
)
from plexa.core.paths import RunPaths
from plexa.core.spec import ActorSpec, PipelineSpec
from plexa.data import holds
from plexa.data.counters import Counters
from plexa.errors import InvalidTransition
from plexa.launch.base import ActorProcess, Launcher, LaunchRequest, Rung, stop_ladder
from plexa.launch.local import sweep
from plexa.nexus.failures import ActorFailure, exit_failure, write_json
from plexa.nexus.logs import LogMerger
from plexa.nexus.supervisor import Supervisor

if TYPE_CHECKING:
    from plexa.nexus.rundir import RunResources

__all__ = ["Entry", "Fleet"]

Send = Callable[..., int]
Emit = Callable[[str, Any], None]

REPORT_GRACE_S = 0.5
"""How long a process that exited with an error after its handshake is given for its failure
report (with the traceback) to arrive: it sends the report, then exits, and the nexus may
see the exit first."""


@dataclass
class Entry:
    """One row of the actor table."""

    name: str
    state: ActorState = ActorState.CREATED
    proc: ActorProcess | None = None
    connected: bool = False
    """The process said hello on the control channel."""
    restarts: int = 0
    failure: ActorFailure | None = None
    """The failure of the current process, if it failed."""
    quitting: bool = False
    """The run is ending: its exit is expected, not a failure."""
    pending_restart: bool = False
    """A new process is being brought up: setup, then run if the pipeline runs."""
    reached: set[ActorState] = field(default_factory=set)
    """States entered since the last signal was sent (a quick actor may pass through one)."""
    exited: float = 0.0
    """When an error exit with no failure report yet was first seen (see ``REPORT_GRACE_S``)."""

    @property
    def doing(self) -> str:
        """What it is doing, in words (for timeouts that name who is late)."""
        if self.proc is None:
            return "no process"
        if not self.connected:
            waiting = getattr(self.proc, "waiting_for", None)  # a launcher that places actors
            return waiting or "process started, no handshake yet"
        return self.state.value


class Fleet:
    """The actor processes of one run and their fate."""

    def __init__(
        self,
        spec: PipelineSpec,
        paths: RunPaths,
        launcher: Launcher,
        supervisor: Supervisor,
        logs: LogMerger,
        emit: Emit,
    ) -> None:
        self.spec = spec
        self.paths = paths
        self.launcher = launcher
        self.supervisor = supervisor
        self.logs = logs
        self.emit = emit
        self.entries = {n: Entry(n) for n in spec.actors}
        self.failures: list[ActorFailure] = []
        """Every failure so far, including those recovered by a restart."""
        self.latest: dict[str, dict[str, Any]] = {}
        """Per actor, the latest ``progress``, ``improved`` and ``aborted`` reports."""
        self.counters: Counters | None = None
        self.domain: Any = None
        self.send: Send = lambda *a, **k: -1
        self.run_state: Callable[[], RunState] = lambda: RunState.CREATED
        self.report_path: Path | None = None
        self.run_name = spec.name
        self.closed = False
        """No more restarts: the run is ending."""

    @property
    def failed(self) -> bool:
        """True while an actor has failed for good (no restart will bring it back)."""
        return any(e.state is ActorState.FAILED for e in self.entries.values())

    def lasting_failures(self) -> list[ActorFailure]:
        """The failures of the actors that have failed for good."""
        failed = (e for e in self.entries.values() if e.state is ActorState.FAILED)
        return [e.failure for e in failed if e.failure is not None]

    @property
    def drained(self) -> bool:
        """True when no actor is left that could still handle or send a message."""
        done = (ActorState.STOPPED, ActorState.FAILED, ActorState.EXITED)
        return all(e.state in done for e in self.entries.values())

    # ----- processes ---------------------------------------------------------------------------
    def spawn(self, name: str) -> None:
        """Start a process for ``name`` (returns at once; the handshake comes later)."""
        entry = self.entries[name]
        import_path = tuple(p for p in sys.path if p)
        if self.spec.source and Path(self.spec.source).is_file():
            import_path = (str(Path(self.spec.source).resolve().parent), *import_path)
        request = LaunchRequest(
            self.paths.run_id, str(self.paths.run_dir), name, os.getpid(), import_path
        )
        entry.proc = self.launcher.spawn(request)
        for fd, label in entry.proc.output_fds():
            self.logs.watch(fd, name, label)
        entry.connected = False
        entry.state = ACTOR_EVENTS.get((entry.state, ActorEvent.RESPAWN), ActorState.CREATED)
        self.supervisor.reset(name)

    def add(self, actor: ActorSpec, resources: RunResources) -> PipelineSpec:
        """Add ``actor`` (no links) to the live run and start its process; the new spec."""
        if self.closed or actor.name in self.entries:
            raise InvalidTransition(f"cannot add {actor.name}: the run is ending, or has one")
        spec = msgspec.structs.replace(self.spec, actors={**self.spec.actors, actor.name: actor})
        resources.grow(spec, actor.name)
        self.spec, self.counters = spec, resources.counters
        self.entries[actor.name] = Entry(actor.name)
        self.spawn(actor.name)
        return spec

    def pids(self) -> dict[str, int]:
        """The pid of every actor that has a process."""
        return {n: e.proc.pid for n, e in self.entries.items() if e.proc is not None}

    def respawn(self, name: str) -> None:
        """Restart ``name``: what its dead queue held is dropped, a new process comes up."""
        assert self.counters is not None
        entry = self.entries[name]
        self.supervisor.restarted(name)
        holds.release(self.counters, self.spec, name)
        holds.reopen(self.counters, self.spec, name)
        entry.failure = None
        entry.restarts += 1
        entry.pending_restart = True
        self.spawn(name)

    def release(self, entry: Entry, *, sweep_marked: bool = True) -> None:
        """The process is gone: read the last of its output, end what it left behind."""
        proc, entry.proc = entry.proc, None
        if proc is None:
            return
        for fd, _ in proc.output_fds():
            for _ in range(16):  # bounded: a child it left may hold the pipe open
                if fd not in self.logs.pipes:
                    break
                self.logs.read(fd)
            self.logs.forget(fd)
        if sweep_marked:
            sweep(str(self.paths.run_dir), entry.name)
        close = getattr(proc, "close", None)
        if close is not None:
            close()

    def end_all(self, grace: float, wait: Callable[[float], None]) -> dict[str, Rung]:
        """The run is ending: no more restarts; every process walks the stop ladder (asked to
        quit, then SIGTERM, then SIGKILL); what a killed actor started is ended too."""
        self.closed = True
        for entry in self.entries.values():
            entry.pending_restart = False
            self.supervisor.cancel(entry.name)
        live = {e.proc: e for e in self.entries.values() if e.proc is not None}
        for entry in live.values():
            entry.quitting = True

        def ask(proc: Any) -> bool:
            entry = live[proc]
            return entry.connected and self.send(entry.name, Signal.QUIT) >= 0

        rungs = stop_ladder(list(live), ask=ask, grace=grace, wait=wait).rungs
        for entry in self.entries.values():
            self.release(entry, sweep_marked=False)
        sweep(str(self.paths.run_dir))  # what a killed actor (or a race) left behind
        return rungs

    def facts(self) -> dict[str, dict[str, Any]]:
        """Per actor, what only the nexus knows (state, pid, restarts, progress, failure)."""
        actors: dict[str, dict[str, Any]] = {}
        for name, entry in self.entries.items():
            info: dict[str, Any] = {
                "state": entry.state.value,
                "pid": entry.proc.pid if entry.proc is not None else None,
                "restarts": entry.restarts,
                "host": getattr(entry.proc, "scope", None) or self.spec.host_of(name),
            }
            node = getattr(entry.proc, "node", None)  # where a launcher places actors
            if node is not None:
                info["node"] = node
            progress = self.latest.get(name, {}).get("progress")
            if progress is not None:
                info["progress"] = {k: progress[k] for k in ("done", "total", "message")}
                if progress.get("fields"):
                    info["progress"]["fields"] = progress["fields"]
            if entry.failure is not None:
                failure = entry.failure.to_dict()
                info["failure"] = {k: failure[k] for k in ("kind", "phase", "error", "traceback")}
            actors[name] = info
        return actors

    # ----- what actors say -------------------------------------------------------------------
    def on_message(self, name: str, msg: msgs.Message) -> None:
        """Follow one message of actor ``name`` (handshake, state, failure, heartbeat)."""
        entry = self.entries[name]
        self.supervisor.seen(name)
        if isinstance(msg, msgs.Heartbeat):
            self.supervisor.seen(name, msg.loops)
        elif isinstance(msg, msgs.Hello):
            entry.connected = True
            if entry.pending_restart:
                self.send(name, Signal.SETUP, restore=True)
        elif isinstance(msg, msgs.StateChanged):
            self.entered(entry, msg.state)
        elif isinstance(msg, msgs.Failure):
            self.fail(ActorFailure(name, msg.kind, msg.phase, msg.error, msg.traceback))

    def on_report(self, name: str, msg: msgs.Message) -> None:
        """Keep and publish an actor's ``progress``, ``improved`` or ``aborted`` report."""
        kind = type(msg).__name__.lower()
        report = {"actor": name, **msgspec.to_builtins(msg)}
        if not report.get("fields", True):
            del report["fields"]  # progress without named values: the shape it always had
        self.latest.setdefault(name, {})[kind] = report
        self.emit(kind, report)

    def entered(self, entry: Entry, state: ActorState) -> None:
        """``entry`` reports ``state``; a restarted actor that is ready rejoins the run."""
        entry.state = state
        entry.reached.add(state)
        self.supervisor.entered(entry.name, state)
        self.emit("state", {"actor": entry.name, "state": state.value})
        if entry.pending_restart and state is ActorState.READY:
            entry.pending_restart = False
            run_state = self.run_state()
            if run_state in (RunState.RUNNING, RunState.PAUSED):
                self.send(entry.name, Signal.RUN)
            if run_state is RunState.PAUSED:
                self.send(entry.name, Signal.PAUSE)
            self.emit("restarted", {"actor": entry.name, "restarts": entry.restarts})

    def fail(self, failure: ActorFailure) -> None:
        """Record ``failure`` (once per process); the exit then decides restart or give up."""
        entry = self.entries[failure.actor]
        if entry.failure is None:
            entry.failure = failure
            self.failures.append(failure)
            self.write_report()
            self.emit("failure", failure.to_dict())
        if entry.proc is None:
            entry.state = ActorState.FAILED

    # ----- supervision ---------------------------------------------------------------------------
    def check(self) -> None:
        """Notice exits and hangs; start the restarts that are due."""
        self.supervisor.tick()  # a stall of the nexus itself is forgiven before anyone is judged
        for entry in self.entries.values():
            if entry.proc is None or entry.quitting:
                continue
            code = entry.proc.exit_code()
            if code is not None:
                if not self._report_may_come(entry, code):
                    self._on_exit(entry, code)
            elif entry.connected:
                why = self.supervisor.hung(entry.name, entry.state)
                if why is not None:
                    self.fail(ActorFailure(entry.name, FailureKind.HUNG, self.phase(entry), why))
                    entry.proc.send(signal.SIGKILL)
        if not self.closed:
            for name in self.supervisor.due():
                self.respawn(name)

    def _report_may_come(self, entry: Entry, code: int) -> bool:
        """True while an error exit's failure report may still be on its way."""
        if code <= 0 or entry.failure is not None or not entry.connected:
            return False
        now = self.supervisor.clock()
        entry.exited = entry.exited or now
        return now - entry.exited < REPORT_GRACE_S

    def _on_exit(self, entry: Entry, code: int) -> None:
        """A process ended without being asked to: record why, restart or give up."""
        assert self.counters is not None
        hint = getattr(entry.proc, "failure", None)  # a remote process knows why it is gone
        why = hint() if hint is not None else None
        self.release(entry, sweep_marked=code < 0)  # else its own teardown ended its children
        entry.connected = False
        entry.exited = 0.0
        if entry.failure is None and why is not None:
            self.fail(ActorFailure(entry.name, why[0], self.phase(entry), why[1], "", code))
        if entry.failure is None:
            failure = exit_failure(entry.name, code, self.phase(entry))
            if failure is not None:
                self.fail(failure)
        holds.hold(self.counters, self.spec, entry.name)
        self.forget_dead_nodes()
        kind = entry.failure.kind if entry.failure is not None else None
        delay = self.supervisor.restart_delay(self.spec.actors[entry.name], kind)
        event = ActorEvent.ERROR if entry.failure is not None else ActorEvent.EXIT
        entry.state = ACTOR_EVENTS.get((entry.state, event), entry.state)
        if delay is None or self.closed:
            holds.detach(self.counters, self.spec, entry.name)
            holds.close(self.counters, self.spec, entry.name)
            self.emit("state", {"actor": entry.name, "state": entry.state.value})
            return
        entry.state = ACTOR_EVENTS[entry.state, ActorEvent.RESTART]
        self.supervisor.schedule(entry.name, delay)
        self.emit("state", {"actor": entry.name, "state": "restarting", "in_s": delay})

    def forget_dead_nodes(self) -> None:
        """Let iceoryx2 reclaim what dead processes held."""
        if self.domain is not None:
            with contextlib.suppress(Exception):
                self.domain.cleanup_dead_nodes()

    def phase(self, entry: Entry) -> Phase:
        """The lifecycle phase ``entry`` is in (for failure records)."""
        if entry.state is ActorState.CREATED:
            return Phase.SPAWN
        if entry.state in (ActorState.SETTING_UP, ActorState.READY):
            return Phase.SETUP
        if entry.state is ActorState.STOPPING:
            return Phase.STOP
        return Phase.RUN

    # ----- the report ----------------------------------------------------------------------------
    def failure_report(self, run: dict[str, Any]) -> dict[str, Any]:
        """Per actor: final state, restarts, and every failure with kind, phase and traceback."""
        actors = {
            name: {
                "state": entry.state.value,
                "restarts": entry.restarts,
                "failures": [
                    {k: v for k, v in f.to_dict().items() if k != "actor"}
                    for f in self.failures
                    if f.actor == name
                ],
            }
            for name, entry in self.entries.items()
        }
        head = {"failed": self.failed, "clean": not self.failures, **run}  # run's word is last
        return {"run": head, "actors": actors}

    def write_report(self, extra: dict[str, Any] | None = None) -> None:
        """Write the failure report beside the log (never raising: a full disk is no failure)."""
        if self.report_path is not None:
            run = {"name": self.run_name, "id": self.paths.run_id, **(extra or {})}
            write_json(self.report_path, self.failure_report(run))
