"""The nexus: turns a spec into processes, drives their lifecycle, watches them, cleans up.

It is single-threaded and driven by its caller: every method that waits does so by polling
the actors' socket until a condition holds or a deadline passes, so the CLI, the server
and tests all drive the same object.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import zmq

from plexa.core import messages as msgs
from plexa.core.documents import ActorFacts, RunFacts
from plexa.core.lifecycle import ActorState, FailureKind, Phase, Signal
from plexa.core.paths import RunPaths, actor_env, log_dir, new_run_id, store_dir
from plexa.core.spec import PipelineSpec
from plexa.data.counters import Counters, LinkField, OutputField
from plexa.errors import ActorFailed, InvalidTransition, RemoteError, Timeout
from plexa.nexus.recorder import with_recorder
from plexa.nexus.status import StatusBuilder
from plexa.nexus.supervisor import Supervisor

__all__ = ["ActorFailure", "Nexus", "QuitReport"]

LogSink = Callable[[str, msgs.LogRecord], None]
LOG_REORDER_S = 0.1
"""How long log records are held so that records from several processes merge in order."""


@dataclass(frozen=True)
class ActorFailure:
    """What happened to a failed actor."""

    actor: str
    """Actor name."""
    kind: FailureKind
    """How it failed."""
    phase: Phase
    """Where in the lifecycle."""
    error: str
    """One line: the exception or the exit status."""
    traceback: str = ""
    """The remote traceback, when there is one."""
    exit_code: int | None = None
    """The process's exit code (negative: killed by that signal)."""

    def __str__(self) -> str:
        text = (
            f"actor {self.actor!r} failed ({self.kind.value} in {self.phase.value}): {self.error}"
        )
        return f"{text}\n{self.traceback.rstrip()}" if self.traceback else text


@dataclass(frozen=True)
class QuitReport:
    """How a run ended: who quit when asked, who needed SIGTERM or SIGKILL, what was removed."""

    graceful: tuple[str, ...]
    terminated: tuple[str, ...]
    killed: tuple[str, ...]
    removed: tuple[str, ...]
    failures: tuple[ActorFailure, ...]
    failed: tuple[str, ...] = ()
    """Actors that had failed for good when the run ended."""
    restarts: dict[str, int] = field(default_factory=dict)
    """Restarts per actor."""
    report: str = ""
    """Path of the failure report written for this run."""

    @property
    def clean(self) -> bool:
        """True when every actor quit when asked and none failed."""
        return not (self.terminated or self.killed or self.failures)

    @property
    def exit_code(self) -> int:
        """0: clean; 1: an actor failed for good or had to be killed; 3: every failure recovered."""
        if self.failed or self.terminated or self.killed:
            return 1
        return 3 if self.failures else 0


@dataclass
class _Actor:
    name: str
    state: ActorState = ActorState.CREATED
    proc: subprocess.Popen[bytes] | None = None
    connected: bool = False
    restarts: int = 0
    last_seen: float = 0.0
    loops: int = 0
    failure: ActorFailure | None = None
    quitting: bool = False
    pending_restart: bool = False
    """A new process is being brought up: setup, then run if the pipeline runs."""


class Nexus:
    """Runs one pipeline. Use as a context manager so that ``quit`` always runs.

    >>> with Nexus(spec) as nexus:          # doctest: +SKIP
    ...     nexus.start(); nexus.setup(); nexus.run()
    ...     nexus.poll(5.0)
    ...     nexus.stop()
    """

    def __init__(
        self, spec: PipelineSpec, *, on_log: LogSink | None = None, resume: bool = False
    ) -> None:
        self.paths = RunPaths.for_run(new_run_id())
        spec = with_recorder(spec, self.paths.run_id)  # adds the recorder actor if asked
        self.spec = spec
        self.name = spec.name
        """The run's name (what ``plexa ctl NAME`` finds it by)."""
        self.actors = {name: _Actor(name) for name in spec.actors}
        self.on_log = on_log
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.recent_logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.log_path = log_dir() / f"{spec.name}-{self.paths.run_id}.log"
        self._log_file: Any = None
        self._log_heap: list[tuple[float, int, str, msgs.LogRecord, dict[str, Any]]] = []
        self._log_seq = 0
        self._sources: dict[Any, Callable[[], None]] = {}
        self._pipes: dict[int, tuple[str, str, bytearray]] = {}
        self.busy = ""
        self.record_extra: dict[str, Any] = {}
        self.on_start: list[Callable[[], None]] = []
        """Called once the run directory exists, before any actor starts (edges bind there)."""
        self.failures: list[ActorFailure] = []
        """Every failure so far, including those recovered by a restart."""
        self.supervisor = Supervisor(spec.settings)
        self.restore = resume
        """Give actors their last checkpoint at setup (``plexa run --resume``)."""
        self.latest: dict[str, dict[str, Any]] = {}
        """Per actor, the latest ``progress``, ``improved`` and ``aborted`` reports."""
        self.started_at = time.monotonic()
        self.stopped_at: float | None = None
        self.state = "created"
        self._ids = 0
        self._replies: dict[int, msgs.Reply] = {}
        self._ctx: zmq.Context[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self.counters: Counters | None = None
        self._store: Any = None
        self._domain: Any = None
        self._status: StatusBuilder | None = None
        self._final_status: dict[str, Any] | None = None
        self._closed = False

    # ----- context -------------------------------------------------------------------------
    def __enter__(self) -> Nexus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()

    @property
    def store(self) -> Any:
        """The run's object store, as the nexus holds it."""
        return self._store

    def wait_until(self, cond: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Drive the run until ``cond(status)`` holds; returns that status.

        Raises :class:`Timeout` after ``timeout`` seconds, :class:`ActorFailed` if an actor fails.
        """
        found: list[dict[str, Any]] = []

        def check() -> bool:
            status = self.status()
            if cond(status):
                found.append(status)
                return True
            return False

        self._wait(check, timeout, "the awaited condition")
        return found[0]

    @property
    def failed(self) -> bool:
        """True while an actor has failed for good (no restart will bring it back)."""
        return any(a.state is ActorState.FAILED for a in self.actors.values())

    # ----- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Create the run's resources and one process per actor; wait for every handshake."""
        self.busy = "start"
        try:
            self._start()
        finally:
            self.busy = ""

    def _start(self) -> None:
        from plexa.data.links import Domain
        from plexa.data.store import Store

        paths = self.paths
        paths.run_dir.mkdir(parents=True, mode=0o700)
        for hook in self.on_start:
            hook()
        self._write_record()
        paths.spec_file.write_bytes(msgspec.json.encode(self.spec))
        paths.shm_dir.mkdir(mode=0o700)
        owner = {
            "pid": os.getpid(),
            "create_time": psutil.Process().create_time(),
            "root": str(paths.root),
        }
        (paths.shm_dir / "owner.json").write_text(json.dumps(owner))  # before anything else
        self.counters = Counters(self.spec, paths.counters_file, create=True)
        self._status = StatusBuilder(self.spec, self.counters)
        where = store_dir(self.spec.settings, self.spec.name, paths)
        self._store = Store(where, self.spec.settings.store_size, create=True)
        self._domain = Domain(paths, "nexus")
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.bind(paths.endpoint("actors"))
        self._write_record()
        for name in self.actors:
            self._spawn(name)
        self._write_record()
        self._wait(
            lambda: all(a.connected for a in self.actors.values()),
            self.spec.settings.setup_timeout,
            "actor processes to start",
        )
        self.state = "created"

    def _spawn(self, name: str) -> None:
        actor = self.actors[name]
        actor.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plexa.runtime.process",
                str(self.paths.run_dir),
                name,
                str(os.getpid()),
            ],
            start_new_session=True,
            env=actor_env(self.paths),  # the import path travels here, never in a file
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for stream, level in ((actor.proc.stdout, 20), (actor.proc.stderr, 30)):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            label = "stdout" if level == 20 else "stderr"
            self._pipes[fd] = (name, label, bytearray())
            self._sources[fd] = functools.partial(self._read_pipe, fd, level)
        actor.connected = False
        actor.state = ActorState.CREATED
        actor.last_seen = time.monotonic()
        self.supervisor.reset(name)

    def _write_record(self) -> None:
        me = psutil.Process()
        record = {
            "run_id": self.paths.run_id,
            "name": self.name,
            "pid": os.getpid(),
            "create_time": me.create_time(),
            "config": self.spec.source,
            "started": time.time(),
            "actors": {n: a.proc.pid for n, a in self.actors.items() if a.proc is not None},
            "endpoints": {"actors": self.paths.endpoint("actors")},
            "log": str(self.log_path),
            **self.record_extra,
        }
        tmp = self.paths.record.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, self.paths.record)

    # ----- messaging -------------------------------------------------------------------------
    def _send(self, name: str, signal_: Signal | str, **args: Any) -> int:
        assert self._router is not None
        self._ids += 1
        value = signal_.value if isinstance(signal_, Signal) else signal_
        try:
            self._router.send_multipart(
                [name.encode(), msgs.encode(msgs.Command(self._ids, value, args))]
            )
        except zmq.ZMQError:  # not connected (yet, or any more)
            return -1
        return self._ids

    def add_source(self, source: Any, callback: Callable[[], None]) -> None:
        """Call ``callback`` from :meth:`poll` whenever ``source`` (a zmq socket or fd) is
        readable: how the control server and other edges share the nexus's loop."""
        self._sources[source] = callback

    def poll(self, timeout: float = 0.0) -> None:
        """Handle actor messages, other sources and process exits for up to ``timeout`` s."""
        assert self._router is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            poller = zmq.Poller()
            poller.register(self._router, zmq.POLLIN)
            for source in self._sources:
                poller.register(source, zmq.POLLIN)
            for source, _ in poller.poll(max(int(left * 1000), 0)):
                if source is self._router:
                    self._drain_router()
                elif source in self._sources:
                    self._sources[source]()
            self._check_processes()
            self._supervise()
            if self._log_heap:
                self._flush_logs()
            if time.monotonic() >= deadline:
                return

    def _drain_router(self) -> None:
        assert self._router is not None
        while True:
            try:
                ident, data = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            self._handle(ident.decode(errors="replace"), data)

    def _read_pipe(self, fd: int, level: int) -> None:
        name, label, buf = self._pipes[fd]
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            if buf:
                self._log(
                    name, msgs.LogRecord(time.time(), level, label, buf.decode(errors="replace"))
                )
            del self._pipes[fd]
            del self._sources[fd]
            return
        buf += chunk
        *lines, rest = bytes(buf).split(b"\n")
        buf[:] = rest
        for line in lines:
            self._log(
                name, msgs.LogRecord(time.time(), level, label, line.decode(errors="replace"))
            )

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Tell every listener (the control server's publisher, the console) about an event."""
        for listener in list(self.listeners):
            listener(kind, data)

    def _log(self, actor: str, rec: msgs.LogRecord) -> None:
        entry = {
            "actor": actor,
            "t": rec.t,
            "level": rec.level,
            "logger": rec.logger,
            "message": rec.message,
        }
        self._log_seq += 1
        heapq.heappush(self._log_heap, (rec.t, self._log_seq, actor, rec, entry))

    def _flush_logs(self, everything: bool = False) -> None:
        """Write out log records older than the reorder window, in time order.

        Records from different processes arrive slightly out of order; holding each for
        ``LOG_REORDER_S`` lets the merged log be sorted by the time each was made.
        """
        horizon = time.time() - LOG_REORDER_S
        heap = self._log_heap
        while heap and (everything or heap[0][0] <= horizon):
            _, _, actor, rec, entry = heapq.heappop(heap)
            self.recent_logs.append(entry)
            if self._log_file is None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(self.log_path, "a", buffering=1)  # noqa: SIM115
            self._log_file.write(format_log(entry) + "\n")
            if self.on_log is not None:
                self.on_log(actor, rec)
            self.emit("log", entry)

    def _handle(self, name: str, data: bytes) -> None:
        actor = self.actors.get(name)
        if actor is None:
            return
        try:
            msg = msgs.decode(data)
        except msgspec.DecodeError:
            return
        actor.last_seen = time.monotonic()
        self.supervisor.seen(name)
        if isinstance(msg, msgs.Hello):
            actor.connected = True
            if actor.pending_restart:
                self._send(name, Signal.SETUP, restore=True)
        elif isinstance(msg, msgs.StateChanged):
            actor.state = msg.state
            self.emit("state", {"actor": name, "state": msg.state.value})
            if actor.pending_restart and msg.state is ActorState.READY:
                actor.pending_restart = False
                if self.state in ("running", "paused"):
                    self._send(name, Signal.RUN)
                self.emit("restarted", {"actor": name, "restarts": actor.restarts})
        elif isinstance(msg, msgs.Reply):
            self._replies[msg.id] = msg
        elif isinstance(msg, msgs.Heartbeat):
            actor.loops = msg.loops
            self.supervisor.seen(name, msg.loops)
        elif isinstance(msg, msgs.Failure):
            self._fail(ActorFailure(name, msg.kind, msg.phase, msg.error, msg.traceback))
        elif isinstance(msg, msgs.LogRecord):
            self._log(name, msg)
        elif isinstance(msg, (msgs.Progress, msgs.Improved, msgs.Aborted)):
            kind = {msgs.Progress: "progress", msgs.Improved: "improved", msgs.Aborted: "aborted"}[
                type(msg)
            ]
            report = {"actor": name, **msgspec.to_builtins(msg)}
            self.latest.setdefault(name, {})[kind] = report
            self.emit(kind, report)

    def _fail(self, failure: ActorFailure) -> None:
        actor = self.actors[failure.actor]
        if actor.failure is None:
            actor.failure = failure
            self.failures.append(failure)
            self._write_report()
            self.emit(
                "failure",
                {
                    "actor": failure.actor,
                    "kind": failure.kind.value,
                    "phase": failure.phase.value,
                    "error": failure.error,
                    "traceback": failure.traceback,
                },
            )
        if actor.proc is None:  # otherwise the exit decides: restart or fail for good
            actor.state = ActorState.FAILED

    @property
    def report_path(self) -> Path:
        """Where the run's failure report is written (beside its log)."""
        return self.log_path.with_suffix(".report.json")

    def failure_report(self) -> dict[str, Any]:
        """Per actor: final state, restarts, and every failure with kind, phase and traceback."""
        actors: dict[str, Any] = {}
        for name, actor in self.actors.items():
            actors[name] = {
                "state": actor.state.value,
                "restarts": actor.restarts,
                "failures": [
                    {
                        "kind": f.kind.value,
                        "phase": f.phase.value,
                        "error": f.error,
                        "exit_code": f.exit_code,
                        "traceback": f.traceback,
                    }
                    for f in self.failures
                    if f.actor == name
                ],
            }
        clean = not self.failures
        return {
            "run": {
                "name": self.name,
                "id": self.paths.run_id,
                "clean": clean,
                "failed": self.failed,
            },
            "actors": actors,
        }

    def _write_report(self) -> None:
        path = self.report_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.failure_report(), indent=2))
        os.replace(tmp, path)

    def _check_processes(self) -> None:
        for actor in self.actors.values():
            proc = actor.proc
            if proc is None or actor.quitting:
                continue
            code = proc.poll()
            if code is not None:
                self._on_exit(actor, code)

    def _on_exit(self, actor: _Actor, code: int) -> None:
        """An actor process ended without being asked to: record why, restart or give up."""
        actor.proc = None
        actor.connected = False
        if actor.failure is None and code != 0:  # exiting 0 on its own is not a failure
            if code < 0:
                kind = FailureKind.KILLED if -code == signal.SIGKILL else FailureKind.CRASHED
                error = f"killed by {signal.Signals(-code).name}"
            else:
                kind, error = FailureKind.CRASHED, f"exited with code {code}"
            self._fail(ActorFailure(actor.name, kind, self._phase(actor), error, exit_code=code))
        self._hold_links(actor.name)
        failure = actor.failure
        delay = self.supervisor.restart_delay(
            self.spec.actors[actor.name], failure.kind if failure is not None else None
        )
        if delay is None or self._closed:
            actor.state = ActorState.FAILED if failure is not None else ActorState.EXITED
            self._detach_links(actor.name)
            self.emit("state", {"actor": actor.name, "state": actor.state.value})
            return
        actor.state = ActorState.RESTARTING
        self.supervisor.schedule(actor.name, delay)
        self.emit("state", {"actor": actor.name, "state": "restarting", "in_s": delay})

    def _supervise(self) -> None:
        """Kill hung actors; start due restarts."""
        for name, actor in self.actors.items():
            if actor.proc is None or actor.quitting or not actor.connected:
                continue
            why = self.supervisor.hung(name, actor.state)
            if why is not None:
                self._fail(ActorFailure(name, FailureKind.HUNG, self._phase(actor), why))
                self._killpg(actor, signal.SIGKILL)
        if self._closed:
            return
        for name in self.supervisor.due():
            self._respawn(name)

    def _respawn(self, name: str) -> None:
        actor = self.actors[name]
        self.supervisor.restarted(name)
        self._release_links(name)
        actor.failure = None
        actor.restarts += 1
        actor.pending_restart = True
        self._spawn(name)
        self._write_record()

    def _hold_links(self, name: str) -> None:
        """A consumer went down: hold its ``block`` producers; release what the process held."""
        assert self.counters is not None
        for link in self.spec.links_to(name):
            if link.policy.value == "block":
                self.counters.link_row(link.name)[LinkField.HOLD] = 1
        if self._domain is not None:
            with contextlib.suppress(Exception):
                self._domain.cleanup_dead_nodes()

    def _release_links(self, name: str) -> None:
        """Before a consumer's new process subscribes: what its dead queue held is dropped."""
        assert self.counters is not None
        for link in self.spec.links_to(name):
            row = self.counters.link_row(link.name)
            sent = int(self.counters.output_row(link.output)[OutputField.SENT])
            gone = sent - int(row[LinkField.CONSUMED])
            if gone > 0:
                row[LinkField.DROPPED] += gone
            row[LinkField.CONSUMED] = sent
            if link.policy.value == "block":
                row[LinkField.HOLD] = 1  # the new consumer lets the producer go once subscribed
            row[LinkField.DETACHED] = 0

    def _detach_links(self, name: str) -> None:
        """A consumer is gone for good: its producers stop waiting for it."""
        assert self.counters is not None
        for link in self.spec.links_to(name):
            row = self.counters.link_row(link.name)
            row[LinkField.DETACHED] = 1
            row[LinkField.HOLD] = 0

    def abort(self, actors: Iterable[str] | None = None) -> None:
        """Abort the current work of running (or paused) actors: they report their last
        improved result and end up stopped."""
        names = self._applicable(actors, Signal.ABORT, {ActorState.RUNNING, ActorState.PAUSED})
        self._signal(
            names,
            Signal.ABORT,
            {ActorState.STOPPED},
            self.spec.settings.stop_timeout,
            "actors to abort",
        )

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
        self._fail(ActorFailure(name, FailureKind.KILLED, self._phase(actor), "killed on request"))
        self._killpg(actor, signal.SIGKILL)
        self._wait(lambda: actor.proc is None, self.spec.settings.stop_timeout, f"{name} to die")

    def revive(self, name: str, timeout: float | None = None) -> None:
        """Bring back an actor that failed for good: new process, setup, ready, run."""
        actor = self.actors[self._select([name])[0]]
        if actor.state is not ActorState.FAILED:
            raise InvalidTransition(f"revive: {name} is {actor.state.value}, not failed")
        self.supervisor.forget_restarts(name)
        self._respawn(name)
        want = {ActorState.RUNNING} if self.state in ("running", "paused") else {ActorState.READY}
        self._wait(
            lambda: actor.state in want and not actor.pending_restart,
            timeout or self.spec.settings.setup_timeout,
            f"{name} to come back",
            fail_fast=False,
        )

    def _phase(self, actor: _Actor) -> Phase:
        if actor.state in (ActorState.CREATED,):
            return Phase.SPAWN
        if actor.state in (ActorState.SETTING_UP, ActorState.READY):
            return Phase.SETUP
        if actor.state is ActorState.STOPPING:
            return Phase.STOP
        return Phase.RUN

    def _raise_if_failed(self) -> None:
        """With ``on_failure: stop``, an actor that failed for good ends whatever was awaited."""
        if self.failed and self.spec.settings.on_failure.value == "stop":
            failed = [
                a.failure
                for a in self.actors.values()
                if a.state is ActorState.FAILED and a.failure is not None
            ]
            raise ActorFailed("\n".join(str(f) for f in failed), {f.actor: f for f in failed})

    def _wait(
        self, cond: Callable[[], bool], timeout: float, what: str, *, fail_fast: bool = True
    ) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if fail_fast:
                self._raise_if_failed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"timed out after {timeout} s waiting for {what}")
            self.poll(min(left, 0.05))

    def _signal(
        self,
        names: Iterable[str],
        signal_: Signal,
        states: set[ActorState],
        timeout: float,
        what: str,
        **args: Any,
    ) -> None:
        names = list(names)
        gone = [n for n in names if not self.actors[n].connected or self.actors[n].proc is None]
        if gone:
            raise InvalidTransition(f"{signal_.value}: not connected: {', '.join(gone)}")
        ids = {name: self._send(name, signal_, **args) for name in names}
        unreachable = [n for n, i in ids.items() if i < 0]
        if unreachable:
            raise InvalidTransition(f"{signal_.value}: not connected: {', '.join(unreachable)}")
        self._wait(
            lambda: all(i in self._replies or self.actors[n].proc is None for n, i in ids.items()),
            timeout,
            f"replies to {signal_.value}",
        )
        refused = {
            n: self._replies[i].error
            for n, i in ids.items()
            if i in self._replies and not self._replies[i].ok
        }
        if refused:
            raise InvalidTransition("; ".join(f"{n}: {why}" for n, why in refused.items()))
        settled = states | {ActorState.FAILED, ActorState.RESTARTING}  # supervision's business
        self._wait(lambda: all(self.actors[n].state in settled for n in names), timeout, what)
        self._raise_if_failed()

    def _select(self, actors: Iterable[str] | None) -> list[str]:
        names = list(self.actors) if actors is None else list(actors)
        unknown = [n for n in names if n not in self.actors]
        if unknown:
            raise InvalidTransition(f"no such actor: {', '.join(unknown)}")
        return names

    # ----- lifecycle ------------------------------------------------------------------------
    def setup(self) -> None:
        """Send ``setup`` to every actor and wait until all are ready."""
        not_created = {
            n: a.state for n, a in self.actors.items() if a.state is not ActorState.CREATED
        }
        if not_created:
            raise InvalidTransition(
                "setup needs every actor created; "
                + ", ".join(f"{n} is {s.value}" for n, s in not_created.items())
            )
        self.state = "setting_up"
        self._signal(
            self.actors,
            Signal.SETUP,
            {ActorState.READY},
            self.spec.settings.setup_timeout,
            "every actor to be ready",
            restore=self.restore,
        )
        self.state = "ready"

    def _require(self, names: list[str], signal_: Signal, allowed: set[ActorState]) -> None:
        """Refuse (changing nothing) unless every named actor is in an allowed state."""
        bad: dict[str, list[str]] = {}
        for name in names:
            state = self.actors[name].state
            if state not in allowed:
                bad.setdefault(state.value, []).append(name)
        if bad:
            raise InvalidTransition(
                "; ".join(
                    f"{signal_.value} is not allowed while {state} ({', '.join(ns)})"
                    for state, ns in bad.items()
                )
            )

    def _applicable(
        self, actors: Iterable[str] | None, signal_: Signal, allowed: set[ActorState]
    ) -> list[str]:
        """Named actors (all must be in ``allowed``), or every actor that is (at least one)."""
        if actors is not None:
            names = self._select(actors)
            self._require(names, signal_, allowed)
            return names
        names = [n for n, a in self.actors.items() if a.state in allowed]
        if not names:
            self._require(list(self.actors), signal_, allowed)
        return names

    def run(self, actors: Iterable[str] | None = None) -> None:
        """Send ``run`` once every actor is ready (or stopped), and wait until all run."""
        if actors is not None:
            names = self._select(actors)
            self._require(names, Signal.RUN, {ActorState.READY, ActorState.STOPPED})
            self._signal(
                names,
                Signal.RUN,
                {ActorState.RUNNING, ActorState.STOPPED},
                self.spec.settings.setup_timeout,
                "actors to run",
            )
            return
        waiting = {
            n: a.state
            for n, a in self.actors.items()
            if a.state not in (ActorState.READY, ActorState.STOPPED)
        }
        if waiting:
            raise InvalidTransition(
                "run needs every actor ready; not ready: "
                + ", ".join(f"{n} ({s.value})" for n, s in waiting.items())
            )
        self._signal(
            self.actors,
            Signal.RUN,
            {ActorState.RUNNING, ActorState.STOPPED},
            self.spec.settings.setup_timeout,
            "every actor to run",
        )
        self.started_at = time.monotonic()
        self.stopped_at = None
        self.state = "running"

    def pause(self, actors: Iterable[str] | None = None) -> None:
        """Pause running actors at their next safe point (all running ones by default)."""
        names = self._applicable(actors, Signal.PAUSE, {ActorState.RUNNING})
        self._signal(
            names,
            Signal.PAUSE,
            {ActorState.PAUSED},
            self.spec.settings.stop_timeout,
            "actors to pause",
        )
        if actors is None:
            self.state = "paused"

    def resume(self, actors: Iterable[str] | None = None) -> None:
        """Resume paused actors (all paused ones by default)."""
        names = self._applicable(actors, Signal.RESUME, {ActorState.PAUSED})
        self._signal(
            names,
            Signal.RESUME,
            {ActorState.RUNNING},
            self.spec.settings.stop_timeout,
            "actors to resume",
        )
        if actors is None:
            self.state = "running"

    def stop(self, actors: Iterable[str] | None = None) -> None:
        """Stop actors producers-first, so each consumer handles what is queued before it stops."""
        settings = self.spec.settings
        stoppable = {ActorState.RUNNING, ActorState.PAUSED, ActorState.READY}
        selected = self._select(actors)
        if actors is not None:
            self._require(selected, Signal.STOP, stoppable)
        elif not any(self.actors[n].state in stoppable for n in selected):
            states = sorted({a.state.value for a in self.actors.values()})
            raise InvalidTransition(f"stop is not allowed while {', '.join(states)}")
        if actors is None:
            self.state = "stopping"
        for group in self.spec.stop_order():
            live = [n for n in group if n in selected and self.actors[n].state in stoppable]
            if live:
                self._signal(
                    live,
                    Signal.STOP,
                    {ActorState.STOPPED, ActorState.FAILED},
                    settings.stop_timeout + settings.drain_timeout,
                    "actors to stop",
                )
        if actors is None:
            self.state = "stopped"
            self.stopped_at = time.monotonic()

    def quit(self) -> QuitReport:
        """End the run: stop, ask every process to quit, then SIGTERM, then SIGKILL; clean up."""
        if self._closed:
            return QuitReport((), (), (), (), tuple(self.failures))
        self._closed = True
        graceful: list[str] = []
        terminated: list[str] = []
        killed: list[str] = []
        if self._router is not None:
            if any(
                a.state in (ActorState.RUNNING, ActorState.PAUSED) for a in self.actors.values()
            ):
                with contextlib.suppress(Exception):
                    self.stop()
            for actor in self.actors.values():
                actor.pending_restart = False
                self.supervisor.of(actor.name).restart_at = None
            live = [a for a in self.actors.values() if a.proc is not None and a.proc.poll() is None]
            for actor in live:
                actor.quitting = True
                if not actor.connected or self._send(actor.name, Signal.QUIT) < 0:
                    self._killpg(actor, signal.SIGTERM)  # still starting: nothing to ask
            timeout = self.spec.settings.stop_timeout
            left = self._await_exit(live, timeout)
            graceful = [a.name for a in live if a not in left]
            for actor in left:
                self._killpg(actor, signal.SIGTERM)
            still = self._await_exit(left, timeout)
            terminated = [a.name for a in left if a not in still]
            for actor in still:
                self._killpg(actor, signal.SIGKILL)
            self._await_exit(still, 5.0)
            killed = [a.name for a in still]
            for actor in self.actors.values():  # reap anything that exited on its own
                if actor.proc is not None:
                    with contextlib.suppress(Exception):
                        actor.proc.wait(timeout=1)
                    self._killpg(actor, signal.SIGKILL)
        removed = self._cleanup()
        self.state = "quit"
        self._write_report()
        return QuitReport(
            tuple(graceful),
            tuple(terminated),
            tuple(killed),
            tuple(removed),
            tuple(self.failures),
            failed=tuple(n for n, a in self.actors.items() if a.state is ActorState.FAILED),
            restarts={n: a.restarts for n, a in self.actors.items()},
            report=str(self.report_path),
        )

    def _await_exit(self, actors: list[_Actor], timeout: float) -> list[_Actor]:
        deadline = time.monotonic() + timeout
        while True:
            left = [a for a in actors if a.proc is not None and a.proc.poll() is None]
            if not left or time.monotonic() >= deadline:
                return left
            self.poll(0.02)

    @staticmethod
    def _killpg(actor: _Actor, sig: signal.Signals) -> None:
        if actor.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(actor.proc.pid, sig)

    def _cleanup(self) -> list[str]:
        """Remove every file of the run; returns what had to be removed by force."""
        if self._domain is not None:
            with contextlib.suppress(Exception):
                self._domain.cleanup_dead_nodes()
            with contextlib.suppress(Exception):
                self._domain.close()
            self._domain = None
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        if self.counters is not None:
            self._final_status = self.status()
            self._status = None
            self.counters.close()
            self.counters = None
        if self._router is not None:
            self._router.close(linger=0)
            self._router = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        for fd in list(self._pipes):
            with contextlib.suppress(OSError):
                self._read_pipe(fd, 20)
        self._flush_logs(everything=True)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        from plexa.nexus.cleanup import remove_run_files

        return remove_run_files(self.paths)

    # ----- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The run's status in the JSON shape of ``plexa run --json`` and ``plexa ctl status``."""
        now = time.monotonic()
        uptime = (self.stopped_at or now) - self.started_at
        drained = self.stopped_at is not None or all(
            a.state in (ActorState.STOPPED, ActorState.FAILED, ActorState.EXITED)
            for a in self.actors.values()
        )
        actors: dict[str, dict[str, Any]] = {}
        for name, actor in self.actors.items():
            info: dict[str, Any] = {
                "state": actor.state.value,
                "pid": actor.proc.pid if actor.proc is not None else None,
                "restarts": actor.restarts,
            }
            progress = self.latest.get(name, {}).get("progress")
            if progress is not None:
                info["progress"] = {k: progress[k] for k in ("done", "total", "message")}
            if actor.failure is not None:
                info["failure"] = {
                    "kind": actor.failure.kind.value,
                    "phase": actor.failure.phase.value,
                    "error": actor.failure.error,
                    "traceback": actor.failure.traceback,
                }
            actors[name] = info
        run = {
            "name": self.name,
            "id": self.paths.run_id,
            "state": "failed" if self.failed else self.state,
            "busy": self.busy,
        }
        if self._status is None and self._final_status is not None:
            return {**self._final_status, "run": {**self._final_status["run"], **run}}
        if self._status is None:
            empty = {
                n: {**a, "msgs_in": 0, "msgs_out": 0, "rate_in": 0.0, "rate_out": 0.0}
                for n, a in actors.items()
            }
            return {"run": {**run, "uptime_s": 0.0}, "actors": empty, "links": {}}
        facts = {n: msgspec.convert(a, ActorFacts) for n, a in actors.items()}
        built = self._status.build(msgspec.convert(run, RunFacts), facts, drained, uptime)
        return msgspec.to_builtins(built)  # type: ignore[no-any-return]


_LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def format_log(entry: dict[str, Any]) -> str:
    """One log line: time, actor, level, logger, message."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["t"]))
    millis = int((entry["t"] % 1) * 1000)
    level = _LEVEL_NAMES.get(entry["level"], str(entry["level"]))
    return f"{stamp}.{millis:03d} {entry['actor']} {level} {entry['logger']}: {entry['message']}"
