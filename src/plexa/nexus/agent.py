"""``plexa agent``: the process on another machine that starts a run's actors there.

A nexus joins the agent to its run with a handshake (protocol and plexa versions, the
agent's key); the agent then creates a local run (its own run directory, counters, store,
iceoryx2 domain and actors' socket) and starts the actors placed on its host as local
processes (:class:`plexa.launch.local.LocalLauncher`), with itself as their parent. It
relays their control frames between its actors' socket and the nexus over Zenoh (so an
actor process is the same program on every host and never needs a network socket of its
own), and reports their output, exits and counters.

A Ray node other than the nexus's runs this agent too, in a Ray actor
(:mod:`plexa.nexus.ray_agent`): there the actor processes are started by Ray, and the agent
only gets ready for each (:meth:`Agent.prepare`) and serves it. Either way, the actors'
checkpoints go to the nexus, and a process started here gets the nexus's copy first
(:mod:`plexa.data.checkpoints`).

Presence is Zenoh liveliness (:mod:`plexa.data.zenoh_presence`): when the nexus's token
goes (killed, or the network cut), the agent stops that run's actors (SIGTERM, SIGKILL after
:data:`ORPHAN_KILL_S`) and removes its files, within 2 s. A killed agent takes its actors
with it: they asked the kernel to die with their parent.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psutil
import zenoh
import zmq

from plexa.core import hostproto as hp
from plexa.core import messages as msgs
from plexa.core.paths import RUN_DIR_ENV, RunPaths, new_run_id, secure_root, write_private
from plexa.core.spec import PipelineSpec
from plexa.data.checkpoints import Checkpoints
from plexa.data.counter_rows import read_rows, write_rows
from plexa.data.zenoh_presence import Presence
from plexa.data.zenoh_session import ZenohSettings, open_session
from plexa.errors import Timeout
from plexa.launch.base import LaunchRequest
from plexa.launch.local import LocalLauncher, LocalProcess, sweep
from plexa.launch.remote import ZENOH_ENV
from plexa.nexus.rundir import RunResources, write_record
from plexa.nexus.status import ProcessUsage

__all__ = ["ORPHAN_KILL_S", "ZENOH_ENV", "Agent"]

log = logging.getLogger("plexa.agent")

ORPHAN_KILL_S = 0.8
"""Seconds between SIGTERM and SIGKILL when a run's nexus is gone."""
COUNTS_S = 0.5
"""Seconds between two counter reports to the nexus."""


@dataclass
class _Proc:
    launch: int
    proc: LocalProcess
    fds: dict[int, str] = field(default_factory=dict)


class _Run:
    """One run this agent serves."""

    def __init__(self, agent: Agent, join: hp.Join) -> None:
        self.agent = agent
        self.run_id = join.run_id
        self.scope = join.scope
        self.spec = msgspec.json.decode(join.spec, type=PipelineSpec)
        self.paths = RunPaths(new_run_id(), secure_root())
        self.res = RunResources(self.paths, self.spec)
        write_record(
            self.paths,
            f"{join.run_name}@{join.scope}",
            {"agent": True, "nexus_run": join.run_id, "config": self.spec.source},
        )
        self.procs: dict[str, _Proc] = {}
        self.usage = ProcessUsage()
        self.seeded: set[str] = set()
        self.pids: dict[str, int] = {}
        """Actors whose processes another launcher started here (:meth:`Agent.started`)."""
        """Actors started here: their counts are reported."""
        self.launcher = LocalLauncher()
        self.ending_at: float | None = None
        self.killed = False
        self.events = agent.session.declare_publisher(hp.run_key(self.run_id, "from", self.scope))
        self.next_counts = 0.0
        self.checkpoints = Checkpoints(self.spec.name)
        self.reported: dict[str, bytes] = {}
        """Actor -> the checkpoint the nexus has of it (the last one sent or received)."""

    def report(self, event: hp.Event) -> None:
        self.events.put(hp.encode(event))

    def env(self) -> tuple[tuple[str, str], ...]:
        import json

        settings = {"mode": "client", "connect": [self.agent.local_endpoint]}
        zenv = {"settings": settings, "run": self.run_id, "authenticated": self.agent.tls}
        return ((ZENOH_ENV, json.dumps(zenv)),)

    def spawn(self, order: hp.Spawn) -> None:
        aspec = self.spec.actors.get(order.actor)
        if aspec is None or self.scope not in (aspec.host, *aspec.also):
            self.report(
                hp.Exited(
                    actor=order.actor,
                    launch=order.launch,
                    code=-1,
                    error=f"actor {order.actor!r} is not placed on {self.scope}",
                )
            )
            return
        old = self.procs.get(order.actor)
        if old is not None and old.proc.alive():
            old.proc.send(signal.SIGKILL)
        self.seed(order.actor, order.rows, order.state)
        request = LaunchRequest(
            self.paths.run_id,
            str(self.paths.run_dir),
            order.actor,
            os.getpid(),
            tuple(p for p in order.import_path if os.path.isdir(p)),
            (*order.env, *self.env()),
        )
        try:
            proc = self.launcher.spawn(request)
        except OSError as exc:
            self.report(hp.Exited(actor=order.actor, launch=order.launch, code=-1, error=str(exc)))
            return
        assert isinstance(proc, LocalProcess)
        self.procs[order.actor] = _Proc(order.launch, proc, {fd: s for fd, s in proc.output_fds()})
        self.report(hp.Started(actor=order.actor, launch=order.launch, pid=proc.pid))

    def seed(self, actor: str, rows: dict[str, bytes], state: bytes) -> None:
        """Before a process of ``actor`` starts here: its counts go on from the nexus's
        ``rows``, and it restores from the nexus's checkpoint ``state``, unless an earlier
        process of this run here left one (as new as the nexus's, or newer)."""
        write_rows(self.res.counters, rows)
        if state and not (actor in self.seeded and self._checkpoint(actor) is not None):
            try:
                self.checkpoints.write(actor, state)
                self.reported[actor] = state
            except Exception as exc:  # lmdb's own errors too: the agent's loop goes on
                log.warning("run %s: cannot keep %s's checkpoint here: %s", self.run_id, actor, exc)
        self.seeded.add(actor)

    def _checkpoint(self, actor: str) -> bytes | None:
        try:
            return self.checkpoints.read(actor)
        except Exception as exc:  # lmdb's own errors too: the agent's loop goes on
            log.warning("run %s: cannot read %s's checkpoint: %s", self.run_id, actor, exc)
            return None

    def kill(self, order: hp.Kill) -> None:
        found = self.procs.get(order.actor)
        if found is not None and found.launch == order.launch:
            with contextlib.suppress(ValueError):
                found.proc.send(signal.Signals(order.signum))

    def read(self, fd: int) -> None:
        for name, p in self.procs.items():
            if fd in p.fds:
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data = b""
                if data:
                    self.report(hp.Output(actor=name, launch=p.launch, stream=p.fds[fd], data=data))
                else:
                    del p.fds[fd]
                return

    def check(self) -> None:
        """Report exits; stop everything once the run is ending."""
        now = time.monotonic()
        for name, p in list(self.procs.items()):
            code = p.proc.exit_code()
            if code is None:
                continue
            for fd in list(p.fds):
                for _ in range(16):
                    if fd not in p.fds:
                        break
                    self.read(fd)
            sweep(str(self.paths.run_dir), name)
            p.proc.close()
            del self.procs[name]
            self.report(hp.Exited(actor=name, launch=p.launch, code=code))
        if self.ending_at is not None and not self.killed and now > self.ending_at:
            self.killed = True
            for p in self.procs.values():
                p.proc.send(signal.SIGKILL)
        if now >= self.next_counts:
            self.next_counts = now + COUNTS_S
            self.send_counts()

    def send_counts(self) -> None:
        here = sorted(self.seeded)  # never zeros over the nexus's counts
        if here:
            now = time.monotonic()
            pids = {**self.pids, **{name: p.proc.pid for name, p in self.procs.items()}}
            usage = {name: self.usage.sample(pid, now) for name, pid in pids.items()}
            rows = read_rows(self.res.counters, self.spec, here)
            states = {}
            for name in here:
                state = self._checkpoint(name)
                if state is not None and state != self.reported.get(name):
                    states[name] = self.reported[name] = state
            self.report(hp.Counts(rows=rows, usage=usage, states=states))

    def end(self, why: str) -> None:
        """Start ending the run: SIGTERM now, SIGKILL after :data:`ORPHAN_KILL_S`."""
        if self.ending_at is None:
            log.info("run %s ends on this host: %s", self.run_id, why)
            self.ending_at = time.monotonic() + ORPHAN_KILL_S
            for p in self.procs.values():
                p.proc.send(signal.SIGTERM)

    def kill_now(self) -> None:
        """End the run at once (SIGKILL, reap, remove its files)."""
        self.end("joined again")
        for p in self.procs.values():
            p.proc.send(signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.proc.popen.wait(1.0)
        self.check()
        self.close()

    def close(self) -> None:
        self.send_counts()
        _undeclare(self.events)
        sweep(str(self.paths.run_dir))
        self.res.close()


class Agent:
    """Serves runs on this host: one per nexus that joins it."""

    def __init__(
        self,
        settings: ZenohSettings,
        scope: str,
        *,
        key: str = "",
        version: str | None = None,
    ) -> None:
        from plexa import __version__

        self.scope = scope
        self.key = key
        self.facts = hp.local_facts(version or __version__)
        self.tls = settings.authenticated
        self.root = secure_root() / f"agent-{scope}"
        self.root.mkdir(mode=0o700, exist_ok=True)
        sock = self.root / "zenoh.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.local_endpoint = f"unixsock-stream/{sock}"
        me = {"pid": os.getpid(), "uid": os.getuid(), "host": scope,
              "create_time": psutil.Process().create_time()}  # fmt: skip
        write_private(self.root / "agent.json", json.dumps(me).encode())
        settings = msgspec.structs.replace(
            settings, mode="router", listen=(*settings.listen, self.local_endpoint)
        )
        self.runs: dict[str, _Run] = {}
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.session = open_session(settings)
        self.presence = Presence(
            self.session, hp.PRESENCE, hp.agent_member(scope), self._on_presence
        )
        self.queryable = self.session.declare_queryable(hp.join_key(scope), self._on_join)
        # declared before any join: an order sent right after the handshake is not missed
        self.subs = [
            self.session.declare_subscriber(hp.run_key("*", "to", scope), self._on_order),
            self.session.declare_subscriber(hp.run_key("*", "down", "*"), self._on_down),
        ]
        self.stopping = False

    # ----- Zenoh threads --------------------------------------------------------------------
    def inbox(self, item: tuple[Any, ...]) -> None:
        """Hand ``item`` to the agent's loop (called on Zenoh's threads)."""
        self._queue.put(item)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _on_order(self, sample: zenoh.Sample) -> None:
        run_id = str(sample.key_expr).split("/")[2]
        self.inbox(("order", run_id, sample.payload.to_bytes()))

    def _on_down(self, sample: zenoh.Sample) -> None:
        parts = str(sample.key_expr).split("/")
        self.inbox(("down", parts[2], parts[4], sample.payload.to_bytes()))

    def _on_presence(self, member: str, present: bool) -> None:
        if not present and member.startswith("nexus."):
            self.inbox(("gone", member[len("nexus.") :]))

    def _on_join(self, query: zenoh.Query) -> None:
        try:
            payload = query.payload
            join = hp.decode_join(payload.to_bytes() if payload is not None else b"")
        except msgspec.DecodeError:
            query.reply(query.key_expr, hp.encode(hp.Refused(reason="not a join request")))
            return
        why = hp.mismatch(self.facts, join.facts)
        if not why and self.key and not hmac.compare_digest(join.key, self.key):
            why = f"wrong key for host {self.scope}"
        if not why and join.scope != self.scope:
            why = f"this agent serves host {self.scope}, not {join.scope}"
        if why:
            log.warning("refused run %s: %s", join.run_id, why)
            answer: hp.Answer = hp.Refused(reason=why, facts=self.facts)
        else:
            self.inbox(("join", join))
            answer = hp.Joined(facts=self.facts)
        query.reply(query.key_expr, hp.encode(answer))

    def prepare(
        self, run_id: str, actor: str, rows: dict[str, bytes], state: bytes, timeout: float
    ) -> dict[str, str]:
        """For an actor process that another launcher starts here (a Ray actor on this
        node, :mod:`plexa.nexus.ray_agent`): wait until the nexus of run ``run_id`` has
        joined, seed the actor as a spawn would (:meth:`_Run.seed`), and return what its
        process's environment needs: its run directory here and its Zenoh router. Called
        from any thread; raises :class:`plexa.Timeout` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while run_id not in self.runs:
            if time.monotonic() > deadline:
                raise Timeout(f"run {run_id} did not join {self.scope} within {timeout:g} s")
            time.sleep(0.01)
        done: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
        self.inbox(("prepare", run_id, actor, rows, state, done))
        try:
            return done.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise Timeout(f"run {run_id} on {self.scope} did not prepare {actor}") from None

    def started(self, run_id: str, actor: str, pid: int) -> None:
        """``actor``'s process, which another launcher started here after :meth:`prepare`,
        runs as ``pid``: its CPU and memory are reported with the counters. Any thread."""
        self.inbox(("pid", run_id, actor, pid))

    # ----- the loop ---------------------------------------------------------------------------
    def serve(self, until: Any = None) -> None:
        """Serve runs until SIGTERM/SIGINT (or ``until()`` is true)."""
        while not self.stopping and not (until is not None and until()):
            self.turn(0.05)

    def turn(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for anything; handle it."""
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        owners: dict[Any, _Run] = {}
        for run in self.runs.values():
            poller.register(run.res.router, zmq.POLLIN)
            owners[run.res.router] = run
            for p in run.procs.values():
                for fd in p.fds:
                    poller.register(fd, zmq.POLLIN)
                    owners[fd] = run
        for source, _ in poller.poll(int(timeout * 1000)):
            if source == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif source in owners and isinstance(source, int):
                owners[source].read(source)
            elif source in owners:
                self._relay_up(owners[source])
        self._handle_inbox()
        for run_id, run in list(self.runs.items()):
            run.check()
            if run.ending_at is not None and not run.procs:
                run.close()
                del self.runs[run_id]

    def _relay_up(self, run: _Run) -> None:
        while True:
            try:
                frames = run.res.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) == 2:
                actor = frames[0].decode(errors="replace")
                if actor in run.spec.actors:
                    if _changes_state(frames[1]):  # the nexus sees the counters it reached
                        run.send_counts()
                    self.session.put(hp.run_key(run.run_id, "up", actor), frames[1])

    def _handle_inbox(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            kind = item[0]
            if kind == "join":
                join: hp.Join = item[1]
                old = self.runs.pop(join.run_id, None)
                if old is not None:  # the nexus lost us and came back: the old run is over
                    old.kill_now()
                log.info("joined run %s (%s) as %s", join.run_id, join.run_name, join.scope)
                try:
                    self.runs[join.run_id] = _Run(self, join)
                except Exception:
                    log.exception("could not start run %s", join.run_id)
                continue
            run = self.runs.get(item[1])
            if run is None:
                continue
            if kind == "gone":
                run.end("its nexus is gone")
            elif kind == "down":
                with contextlib.suppress(zmq.ZMQError):
                    run.res.router.send_multipart([item[2].encode(), item[3]])
            elif kind == "order":
                self._order(run, item[2])
            elif kind == "pid":
                run.pids[item[2]] = item[3]
            elif kind == "prepare" and run.ending_at is None:
                run.seed(item[2], item[3], item[4])
                item[5].put({RUN_DIR_ENV: str(run.paths.run_dir), **dict(run.env())})

    def _order(self, run: _Run, data: bytes) -> None:
        try:
            order = hp.decode_order(data)
        except msgspec.DecodeError:
            return
        if isinstance(order, hp.Spawn):
            log.info("run %s: start %s", run.run_id, order.actor)
            if run.ending_at is None:
                run.spawn(order)
        elif isinstance(order, hp.Kill):
            run.kill(order)
        else:
            run.end("the nexus ended it")

    def close(self) -> None:
        """End every run (their actors too) and leave."""
        for run in self.runs.values():
            run.end("the agent stops")
        deadline = time.monotonic() + ORPHAN_KILL_S + 2.0
        while self.runs and time.monotonic() < deadline:
            self.turn(0.05)
        for run in self.runs.values():
            run.close()
        self.runs.clear()
        for entity in (self.queryable, *self.subs):
            _undeclare(entity)
        self.presence.close()
        _close(self.session)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        for name in ("zenoh.sock", "agent.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()
        with contextlib.suppress(OSError):
            self.root.rmdir()


def _undeclare(entity: Any) -> None:
    entity.undeclare()


def _close(session: Any) -> None:
    session.close()


def _changes_state(frame: bytes) -> bool:
    try:
        return isinstance(msgs.decode(frame), msgs.StateChanged)
    except msgspec.DecodeError:
        return False
