"""The nexus: the actor table, the lifecycle commands, supervision's actions, status.

It is single-threaded and driven by its caller: :meth:`Nexus.poll` handles what arrived (actor
messages, output pipes, attached edges' sockets, process exits) and returns; every command
that waits polls until its condition holds or its deadline passes. Whether a command is
allowed, where it leads and what it settles in comes from :mod:`plexa.core.lifecycle`;
processes come from a :class:`plexa.launch.base.Launcher`.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from plexa.core import messages as msgs
from plexa.core.lifecycle import (
    ACTOR_SIGNALS,
    RUN_SIGNALS,
    ActorState,
    FailureKind,
    RunState,
    Signal,
    refusal,
    targets,
)
from plexa.core.paths import RunPaths, log_dir, new_run_id
from plexa.core.spec import ActorSpec, PipelineSpec
from plexa.data.shm_check import shm_fallback
from plexa.errors import ActorFailed, InvalidTransition, RemoteError, Timeout
from plexa.launch.base import Launcher, Rung
from plexa.nexus.attach import Attachment
from plexa.nexus.failures import ActorFailure, QuitReport
from plexa.nexus.fleet import Entry, Fleet
from plexa.nexus.history import prune
from plexa.nexus.logs import LogMerger, LogSink
from plexa.nexus.loop import Loop
from plexa.nexus.prestart import Prestart
from plexa.nexus.ray_agent import default_launcher
from plexa.nexus.recorder import with_recorder
from plexa.nexus.rundir import RunResources, run_fields, write_record
from plexa.nexus.status import StatusBuilder, status_document
from plexa.nexus.supervisor import Supervisor

__all__ = ["ActorFailure", "Nexus", "QuitReport"]

class Nexus:
    """Runs one pipeline. Use as a context manager so that ``quit`` always runs.

    >>> with Nexus(spec) as nexus:          # doctest: +SKIP
    ...     nexus.start(); nexus.setup(); nexus.run()
    ...     nexus.poll(5.0)
    ...     nexus.stop()
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        on_log: LogSink | None = None,
        resume: bool = False,
        name: str | None = None,
        launcher: Launcher | None = None,
        prestarted: Prestart | None = None,
    ) -> None:
        self.prestarted = prestarted
        """The run id and fork server started before this nexus (``plexa run``), if any."""
        self.paths = prestarted.paths if prestarted else RunPaths.for_run(new_run_id())
        if prestarted is not None and launcher is not None:  # the caller's launcher forks
            prestarted.discard_server()
        spec = with_recorder(spec, self.paths.run_id)  # adds the recorder actor if asked
        spec = shm_fallback(spec)  # a tiny /dev/shm: links on Zenoh, with one warning
        self.spec = spec
        self.name = name or spec.name
        """The run's name (what ``plexa ctl NAME`` finds it by)."""
        self.attachments: list[Attachment] = []
        self.logs = LogMerger(log_dir() / f"{self.name}-{self.paths.run_id}.log", self.emit, on_log)
        self.fleet = Fleet(
            spec,
            self.paths,
            launcher or default_launcher(spec, prestarted.take_server() if prestarted else None),
            Supervisor(spec.settings),
            self.logs,
            self.emit,
        )
        self.fleet.send = self._send
        self.fleet.run_state = lambda: self.run_state
        self.fleet.report_path = self.report_path
        self.fleet.run_name = self.name
        self.actors = self.fleet.entries
        """The actor table (name -> entry with state, process, restarts, failure)."""
        self.failures = self.fleet.failures
        """Every failure so far, including those recovered by a restart."""
        self.supervisor = self.fleet.supervisor
        self.restore = resume
        """Give actors their last checkpoint at setup (``plexa run --resume``)."""
        self.latest = self.fleet.latest
        """Per actor, the latest ``progress``, ``improved`` and ``aborted`` reports."""
        self.run_state = RunState.CREATED
        """What the nexus last drove the whole run to (see :attr:`state`)."""
        self.busy = ""
        """The lifecycle command in progress, if any."""
        self.quit_requested = False
        """A client asked the run to end (:func:`plexa.nexus.driver.drive` then ends it)."""
        self.started_at = time.monotonic()
        self.stopped_at: float | None = None
        self.started_wall = time.time()
        self.loop: Loop | None = None
        self.resources: RunResources | None = None
        """The run's directory, counters, store, domain and actors' socket (after start)."""
        self._status: StatusBuilder | None = None
        self._final_status: dict[str, Any] | None = None
        self._closed = False

    # ----- context, attachments ------------------------------------------------------------
    def __enter__(self) -> Nexus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()

    @property
    def store(self) -> Any:
        """The run's object store, as the nexus holds it."""
        return self.resources.store if self.resources is not None else None

    @property
    def log_path(self) -> Path:
        """The run's merged log file."""
        return self.logs.path

    @property
    def recent_logs(self) -> Any:
        """The last lines of the merged log (for late clients), newest last."""
        return self.logs.recent

    @property
    def report_path(self) -> Path:
        """Where the run's failure report is written (beside its log)."""
        return self.log_path.with_suffix(".report.json")

    @property
    def state(self) -> RunState:
        """The run's state: ``failed`` while an actor failed for good, else the driven one."""
        return RunState.FAILED if self.failed else self.run_state

    @property
    def failed(self) -> bool:
        """True while an actor has failed for good (no restart will bring it back)."""
        return self.fleet.failed

    def attach(self, attachment: Attachment) -> None:
        """Let ``attachment`` share the loop (and put its fields in the run record)."""
        self.attachments.append(attachment)
        if self.resources is not None:
            self._write_record()

    def detach(self, attachment: Attachment) -> None:
        """Undo :meth:`attach`."""
        if attachment in self.attachments:
            self.attachments.remove(attachment)

    def emit(self, kind: str, data: Any) -> None:
        """Tell every attachment about an event."""
        for attachment in list(self.attachments):
            attachment.on_event(kind, data)

    def wait_until(self, cond: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Drive the run until ``cond(status)`` holds; returns that status.

        Raises :class:`Timeout` after ``timeout`` seconds, :class:`ActorFailed` if an actor fails.
        """
        found: list[dict[str, Any]] = []

        def check() -> bool:
            status = self.status()
            if cond(status):
                found.append(status)
            return bool(found)

        self._wait(check, timeout, "the awaited condition")
        return found[0]

    # ----- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Create the run's resources and one process per actor; wait for every handshake."""
        self.busy = "start"
        with contextlib.suppress(OSError):
            prune()  # the logs and reports of old runs (plexa.nexus.history has the rule)
        try:
            place = getattr(self.fleet.launcher, "place", None)  # a launcher that places actors
            if place is not None:  # decides their hosts before any actor reads the spec
                self.spec = self.fleet.spec = place(self.spec, self.paths.run_id)
            claimed = self.prestarted is not None
            self.resources = res = RunResources(self.paths, self.spec, claimed=claimed)
            self._status = StatusBuilder(self.spec, res.counters)
            self._status.remote_usage = getattr(self.fleet.launcher, "usage", None)
            self.fleet.counters, self.fleet.domain = res.counters, res.domain
            self.loop = Loop(res.router, self.logs, self.fleet, self.attachments)
            for name in self.actors:
                self.fleet.spawn(name)
            self._write_record()
            self._wait_for(
                lambda a: a.connected, self.spec.settings.setup_timeout, "to start (handshake)"
            )
        finally:
            self.busy = ""

    def _write_record(self) -> None:
        pids, log = self.fleet.pids(), str(self.log_path)
        fields = run_fields(self.paths, self.spec, self.started_wall, pids, log)
        write_record(self.paths, self.name, fields, [a.record_fields() for a in self.attachments])

    # ----- the loop --------------------------------------------------------------------------
    @property
    def _replies(self) -> dict[int, msgs.Reply]:
        assert self.loop is not None
        return self.loop.replies

    def _send(self, name: str, command: Signal | str, **args: Any) -> int:
        assert self.loop is not None
        return self.loop.send(name, command, **args)

    def poll(self, timeout: float = 0.0) -> None:
        """Drive the run for ``timeout`` seconds (at least one turn of the loop)."""
        deadline = time.monotonic() + timeout
        self._turn(timeout)
        while (left := deadline - time.monotonic()) > 0:
            self._turn(left)

    def _turn(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for something to happen; handle everything that did."""
        assert self.loop is not None
        restarts = sum(e.restarts for e in self.actors.values())
        self.loop.turn(timeout)
        if sum(e.restarts for e in self.actors.values()) != restarts:
            self._write_record()

    def _wait(
        self, cond: Callable[[], bool], timeout: float, what: str, *, fail_fast: bool = True
    ) -> None:
        """Poll until ``cond()``; :class:`Timeout` after ``timeout`` s (fail fast on a failure)."""
        deadline = time.monotonic() + timeout
        while not cond():
            if fail_fast:
                self._raise_if_failed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"timed out after {timeout:g} s waiting for {what}")
            self._turn(left)

    def _wait_for(
        self, cond: Callable[[Entry], bool], timeout: float, what: str, names: Iterable[str] = ()
    ) -> None:
        """Wait until ``cond`` holds for every named actor (all by default); a timeout names
        each actor that is not there yet and the state it is in."""
        chosen = [self.actors[n] for n in (names or self.actors)]
        try:
            self._wait(lambda: all(cond(a) for a in chosen), timeout, f"every actor {what}")
        except Timeout:
            late = [f"{a.name} ({a.doing})" for a in chosen if not cond(a)]
            raise Timeout(
                f"timed out after {timeout:g} s waiting for actors {what}: {', '.join(late)}"
            ) from None

    def _raise_if_failed(self) -> None:
        """With ``on_failure: stop``, an actor that failed for good ends whatever was awaited."""
        if self.failed and self.spec.settings.on_failure.value == "stop":
            failed = self.fleet.lasting_failures()
            raise ActorFailed("\n".join(str(f) for f in failed), {f.actor: f for f in failed})

    def failure_report(self) -> dict[str, Any]:
        """Per actor: final state, restarts, and every failure with kind, phase and traceback."""
        return self.fleet.failure_report({"name": self.name, "id": self.paths.run_id})

    # ----- lifecycle ---------------------------------------------------------------------------
    def setup(self, actors: Iterable[str] | None = None) -> None:
        """Send ``setup`` to every actor (or those named) and wait until all are ready."""
        self._drive(Signal.SETUP, actors, self.spec.settings.setup_timeout, restore=self.restore)

    def run(self, actors: Iterable[str] | None = None) -> None:
        """Send ``run`` once every actor is ready (or stopped), and wait until all run."""
        self._drive(Signal.RUN, actors, self.spec.settings.setup_timeout)
        if actors is None:
            self.started_at = time.monotonic()
            self.stopped_at = None

    def pause(self, actors: Iterable[str] | None = None) -> None:
        """Pause running actors at their next safe point (all running ones by default)."""
        self._drive(Signal.PAUSE, actors, self.spec.settings.stop_timeout)

    def resume(self, actors: Iterable[str] | None = None) -> None:
        """Resume paused actors (all paused ones by default)."""
        self._drive(Signal.RESUME, actors, self.spec.settings.stop_timeout)

    def stop(self, actors: Iterable[str] | None = None) -> None:
        """Stop actors producers-first, so each consumer handles what is queued before it stops."""
        settings = self.spec.settings
        self._drive(Signal.STOP, actors, settings.stop_timeout + settings.drain_timeout)
        if actors is None:
            self.stopped_at = time.monotonic()

    def abort(self, actors: Iterable[str] | None = None) -> None:
        """Abort the current work of running (or paused) actors: they report their last
        improved result and end up stopped."""
        self._drive(Signal.ABORT, actors, self.spec.settings.stop_timeout)
        if actors is None:
            self.stopped_at = time.monotonic()

    def _select(self, actors: Iterable[str] | None) -> list[str]:
        names = list(self.actors) if actors is None else list(actors)
        unknown = [n for n in names if n not in self.actors]
        if unknown:
            raise InvalidTransition(f"no such actor: {', '.join(unknown)}")
        return names

    def _drive(
        self, signal_: Signal, actors: Iterable[str] | None, timeout: float, **args: Any
    ) -> None:
        """Send ``signal_`` (to every actor the table allows, producers first for stop and
        abort) and wait until each has settled where the table says."""
        chosen = self._select(actors)
        states = {n: self.actors[n].state for n in chosen}
        names = targets(states, self.run_state, signal_, named=actors is not None)
        whole = actors is None
        during, after = RUN_SIGNALS.get((self.run_state, signal_), (self.run_state, None))
        self.busy = signal_.value
        if whole:
            self.run_state = during
        try:
            if signal_ in (Signal.STOP, Signal.ABORT):
                for group in self.spec.stop_order():
                    live = [n for n in group if n in names and self._accepts(n, signal_)]
                    if live:
                        self._signal(live, signal_, timeout, **args)
            else:
                self._signal(names, signal_, timeout, **args)
        finally:
            self.busy = ""
        if whole and after is not None:
            self.run_state = after

    def _accepts(self, name: str, signal_: Signal) -> bool:
        return refusal(self.actors[name].state, signal_) is None

    def _signal(self, names: list[str], signal_: Signal, timeout: float, **args: Any) -> None:
        gone = [n for n in names if not self.actors[n].connected or self.actors[n].proc is None]
        if gone:
            raise InvalidTransition(f"{signal_.value}: not connected: {', '.join(gone)}")
        settles = {n: ACTOR_SIGNALS[self.actors[n].state, signal_].settles for n in names}
        for name in names:
            self.actors[name].reached.clear()
        ids = {name: self._send(name, signal_, **args) for name in names}
        unreachable = [n for n, i in ids.items() if i < 0]
        if unreachable:
            raise InvalidTransition(f"{signal_.value}: not connected: {', '.join(unreachable)}")
        self._wait_for(
            lambda a: ids[a.name] in self._replies or a.proc is None,
            timeout,
            f"to answer {signal_.value}",
            names,
        )
        replies = {n: self._replies.pop(i, None) for n, i in ids.items()}
        refused = {n: r.error for n, r in replies.items() if r is not None and not r.ok}
        if refused:
            raise InvalidTransition("; ".join(f"{n}: {why}" for n, why in refused.items()))
        out_of_hands = {ActorState.FAILED, ActorState.RESTARTING}  # supervision's business
        self._wait_for(
            lambda a: settles[a.name] in a.reached or a.state in out_of_hands,
            timeout,
            f"to be {'/'.join(sorted({s.value for s in settles.values()}))} after {signal_}",
            names,
        )
        self._raise_if_failed()

    # ----- requests to one actor ------------------------------------------------------------
    def request(self, name: str, command: str, timeout: float | None = None, **args: Any) -> Any:
        """Send a request to actor ``name``, applied at its next safe point; returns the
        value, or raises :class:`RemoteError` with the actor's reason and traceback."""
        actor = self.actors[self._select([name])[0]]
        if actor.proc is None or not actor.connected:
            raise InvalidTransition(f"{command}: {name} is {actor.state.value}")
        req = self._send(name, command, **args)
        limit = self.spec.settings.stop_timeout if timeout is None else timeout
        self._wait(
            lambda: req in self._replies or actor.proc is None,
            limit,
            f"{name} to answer {command}",
            fail_fast=False,
        )
        reply = self._replies.pop(req, None)
        if reply is None:
            raise RemoteError(f"{command}: {name} went away before answering")
        if not reply.ok:
            raise RemoteError(reply.error, reply.traceback)
        return reply.value

    def set_option(self, name: str, key: str, value: Any, timeout: float | None = None) -> None:
        """Change option ``key`` of actor ``name`` (checked against ``setup``'s annotation)."""
        self.request(name, "set", timeout, key=key, value=value)

    def invoke(self, name: str, method: str, args: Any = None, timeout: float | None = None) -> Any:
        """Call ``@plexa.command`` ``method`` of actor ``name`` at its next safe point."""
        return self.request(name, "invoke", timeout, method=method, args=args or [])

    def kill(self, name: str) -> None:
        """SIGKILL actor ``name`` on purpose (its restart policy then applies)."""
        actor = self.actors[self._select([name])[0]]
        if actor.proc is None:
            raise InvalidTransition(f"kill: {name} has no process ({actor.state.value})")
        phase = self.fleet.phase(actor)
        self.fleet.fail(ActorFailure(name, FailureKind.KILLED, phase, "killed on request"))
        actor.proc.send(signal.SIGKILL)
        self._wait(lambda: actor.proc is None, self.spec.settings.stop_timeout, f"{name} to die")

    def revive(self, name: str, timeout: float | None = None) -> None:
        """Bring back an actor that failed for good: new process, setup, ready, run."""
        actor = self.actors[self._select([name])[0]]
        if actor.state is not ActorState.FAILED:
            raise InvalidTransition(f"revive: {name} is {actor.state.value}, not failed")
        self.supervisor.forget_restarts(name)
        self.fleet.respawn(name)
        self._write_record()
        runs = self.run_state in (RunState.RUNNING, RunState.PAUSED)
        want = ActorState.RUNNING if runs else ActorState.READY
        self._wait(
            lambda: actor.state is want and not actor.pending_restart,
            timeout or self.spec.settings.setup_timeout,
            f"{name} to come back",
            fail_fast=False,
        )

    def add_actor(self, actor: ActorSpec) -> None:
        """Launch ``actor``, without links, on the live run (the recorder plexa.nexus.live adds)."""
        assert self.resources is not None and self._status is not None
        self.spec = self.fleet.add(actor, self.resources)
        self._status = self._status.grown(self.spec, self.resources.counters)
        self._write_record()

    # ----- quit -------------------------------------------------------------------------------
    def quit(self) -> QuitReport:
        """End the run: stop, ask every process to quit, then SIGTERM, then SIGKILL; clean up."""
        if self._closed:
            return QuitReport((), (), (), (), tuple(self.failures), log=str(self.log_path))
        began = time.monotonic()
        self._closed = self.fleet.closed = True
        for attachment in list(self.attachments):  # jobs and the like end first
            attachment.closing()
        rungs: dict[str, Rung] = {}
        if self.resources is not None:
            live_states = (ActorState.RUNNING, ActorState.PAUSED)
            if any(a.state in live_states for a in self.actors.values()):
                with contextlib.suppress(Exception):
                    self.stop()
            rungs = self.fleet.end_all(self.spec.settings.stop_timeout, wait=self._turn)
        removed = self._cleanup()
        self.run_state = RunState.QUIT
        quit_s = time.monotonic() - began
        report = QuitReport.of(
            rungs,
            removed,
            self.failures,
            failed=tuple(n for n, a in self.actors.items() if a.state is ActorState.FAILED),
            restarts={n: a.restarts for n, a in self.actors.items()},
            report=str(self.report_path),
            log=str(self.log_path),
            quit_s=quit_s,
        )
        self.fleet.write_report({"clean": report.clean, "quit_s": round(quit_s, 4)})
        return report

    def _cleanup(self) -> list[str]:
        """Remove every file of the run; returns what had to be removed by force."""
        removed: list[str] = []
        if self.resources is not None:
            self._final_status, self._status = self.status(), None
        if self.resources is not None or self.prestarted is not None:
            with contextlib.suppress(Exception):  # tells remote hosts the run is over
                self.fleet.launcher.close()
        if self.resources is not None:
            removed, self.resources = self.resources.close(), None
        elif self.prestarted is not None:  # never started: its claimed directories go
            self.prestarted.discard()
        self.logs.close()
        return removed

    # ----- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The run's status in the JSON shape of ``plexa run --json`` and ``plexa ctl status``."""
        now = time.monotonic()
        uptime = (self.stopped_at or now) - self.started_at
        drained = self.stopped_at is not None or self.fleet.drained
        actors = self.fleet.facts()
        run = {"name": self.name, "id": self.paths.run_id, "state": self.state.value}
        run["busy"] = self.busy
        return status_document(self._status, self._final_status, run, actors, drained, uptime)
