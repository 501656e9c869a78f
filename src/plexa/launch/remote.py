"""Actor processes on other machines, started by their hosts' agents (``plexa agent``).

:class:`HostsLauncher` is the launch interface for a pipeline with ``hosts:``: an actor
without a ``host:`` line starts here (through a local launcher), one with a ``host:`` line is
started by that host's agent. The nexus sees every actor the same way:

* **control** — for each remote actor the launcher connects a zmq DEALER with the actor's
  name to the nexus's own actors' socket and relays its frames over Zenoh to the agent, which
  hands them to the actor through its own actors' socket. The actor process is the same
  program everywhere and needs no network socket; the one session between hosts is Zenoh's,
  with mutual TLS off-host (see ``docs/hosts.md`` for why not CurveZMQ over TCP).
* **output** — the agent forwards what the process writes; the launcher writes it into a
  local pipe that the nexus's log merger reads, as it reads a local actor's.
* **exits** — reported by the agent. When the agent's liveliness token goes (killed, or the
  network cut: Zenoh's 1 s lease), every process on that host counts as ended, with the
  failure kind ``host_lost``. When the host is back, it is joined again and the processes the
  nexus restarted meanwhile start there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import zenoh
import zmq

from plexa.core import hostproto as hp
from plexa.core.paths import RunPaths
from plexa.core.spec import HostSpec, PipelineSpec
from plexa.data.checkpoints import Checkpoints
from plexa.data.counter_rows import read_rows, write_rows
from plexa.data.counters import Counters
from plexa.data.zenoh_presence import Presence
from plexa.data.zenoh_session import TlsFiles, ZenohSettings, open_session
from plexa.errors import ConfigError, ConfigIssue, StoreError
from plexa.launch.base import ActorProcess, Launcher, LaunchRequest
from plexa.launch.remote_host import Host, RemoteProcess

__all__ = ["ZENOH_ENV", "HostsLauncher", "RemoteProcess"]

log = logging.getLogger("plexa.hosts")

ZENOH_ENV = "PLEXA_ZENOH"
"""The environment variable that tells an actor process how to reach its host's Zenoh router
(JSON: ``settings``, ``run``, ``authenticated``)."""


class HostsLauncher:
    """Starts actors here (through ``local``) or on their hosts' agents, as their ``host:``
    lines say (a :class:`plexa.launch.base.Launcher`)."""

    def __init__(self, local: Launcher | None = None) -> None:
        from plexa import __version__
        from plexa.launch.local import LocalLauncher

        self.local = local or LocalLauncher()
        self.facts = hp.local_facts(__version__)
        self.spec: PipelineSpec | None = None
        self.run_id = ""
        self.session: zenoh.Session | None = None
        self.hosts: dict[str, Host] = {}
        self.requests: dict[str, LaunchRequest] = {}
        self._launches = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._entities: list[Any] = []
        self._presence: Presence | None = None
        self._counters: Counters | None = None
        self._usage: dict[str, tuple[float | None, int | None]] = {}
        self._zenv: tuple[tuple[str, str], ...] = ()
        self._sock = ""
        self._endpoint = ""
        self._checkpoints = Checkpoints("")

    # ----- start --------------------------------------------------------------------------
    def _open(self, request: LaunchRequest) -> None:
        paths = RunPaths(request.run_id, Path(request.run_dir).parent)
        spec = msgspec.json.decode(paths.spec_file.read_bytes(), type=PipelineSpec)
        self._sock = str(paths.run_dir / "zenoh.sock")
        for hspec in spec.hosts.values():
            if hspec.endpoint.startswith("tcp/") and not hspec.insecure:
                raise ConfigError([ConfigIssue(
                    spec.source or "(spec)", None, f"hosts.{hspec.name}.endpoint",
                    "plain tcp lets anyone who reaches the port (other users of this machine "
                    "too) pose as the agent; use tls/ (or insecure: true on a closed network)",
                )])  # fmt: skip
        tls = spec.tls
        local = f"unixsock-stream/{self._sock}"
        settings = ZenohSettings(
            mode="router",
            listen=(local,),
            connect=tuple(h.endpoint for h in spec.hosts.values()),
            tls=TlsFiles(ca=tls.ca, cert=tls.cert, key=tls.key) if tls is not None else None,
            insecure=any(h.insecure for h in spec.hosts.values()),
        )
        zenv = {
            "settings": {"mode": "client", "connect": [local]},
            "run": request.run_id,
            "authenticated": settings.authenticated,
        }
        self._zenv = ((ZENOH_ENV, json.dumps(zenv)),)
        self.attach(paths, spec, open_session(settings), spec.hosts.values())

    def attach(
        self, paths: RunPaths, spec: PipelineSpec, session: zenoh.Session, hosts: Iterable[HostSpec]
    ) -> None:
        """Serve run ``paths`` over ``session`` (closed by :meth:`close`): relay its remote
        actors' control frames, take their hosts' counters and checkpoints, join ``hosts``
        (more may come, :meth:`add_host`). :class:`plexa.launch.ray.RayLauncher` uses this
        for the agents on its Ray nodes, whose actor processes Ray starts."""
        self.spec, self.run_id, self.session = spec, paths.run_id, session
        self._endpoint = paths.endpoint("actors")
        self._checkpoints = Checkpoints(spec.name)
        with contextlib.suppress(OSError):
            self._counters = Counters(spec, paths.counters_file)
        self._entities.append(
            session.declare_subscriber(hp.run_key(self.run_id, "up", "*"), self._on_up)
        )
        self._presence = Presence(
            session, hp.PRESENCE, hp.nexus_member(self.run_id), self._on_presence
        )
        for hspec in hosts:
            self.add_host(hspec)
        relay = threading.Thread(target=self._relay, name="plexa-host-relay", daemon=True)
        relay.start()
        self._threads.append(relay)

    def add_host(self, hspec: HostSpec) -> Host:
        """Join ``hspec``'s agent whenever it is present (a thread per host)."""
        assert self.session is not None
        host = Host(self, hspec)
        self.hosts[host.scope] = host
        key = hp.run_key(self.run_id, "from", host.scope)
        self._entities.append(self.session.declare_subscriber(key, host.on_event))
        thread = threading.Thread(
            target=host.run, args=(self.session, self._stop), name=f"plexa-join-{host.scope}"
        )
        thread.daemon = True
        thread.start()
        self._threads.append(thread)
        if self._presence is not None and hp.agent_member(host.scope) in self._presence.members():
            host.present.set()  # it arrived before it was added
        return host

    def _on_presence(self, member: str, present: bool) -> None:
        if not member.startswith("agent."):
            return
        host = self.hosts.get(member[len("agent.") :])
        if host is None:
            return
        if present:
            host.present.set()
        else:
            host.present.clear()
            host.left()

    # ----- the launch interface -------------------------------------------------------------
    def spawn(self, request: LaunchRequest) -> ActorProcess:
        """Start ``request``'s actor where its ``host:`` line says; returns at once."""
        if self.session is None:
            self._open(request)
        assert self.spec is not None
        request = LaunchRequest(
            request.run_id,
            request.run_dir,
            request.actor,
            request.nexus_pid,
            request.import_path,
            (*request.env, *self._zenv),
        )
        scope = self._place(request.actor)
        if not scope:
            return self.local.spawn(request)
        self.requests[request.actor] = request
        self._launches += 1
        host = self.hosts[scope]
        proc = RemoteProcess(request.actor, host, self._launches)
        self.inbox(("dealer", request.actor))
        host.start(proc)
        return proc

    def _place(self, actor: str) -> str:
        """Where ``actor`` starts (empty: here). Its first start is on its first host,
        waiting for it as an actor with one host does (agents join in no particular order:
        taking whichever joined first put it on its second host under load). A restart
        goes to the first of its hosts that has joined, or waits for its first host."""
        assert self.spec is not None
        aspec = self.spec.actors[actor]
        if actor in self.requests:  # it started before: its host may be lost
            for scope in (aspec.host, *aspec.also):
                host = self.hosts.get(scope)
                if host is not None and host.joined:
                    return scope
        return aspec.host

    def host_of(self, actor: str) -> str:
        """The host ``actor`` is placed on (empty: here)."""
        return self.spec.host_of(actor) if self.spec is not None else ""

    def close(self) -> None:
        """Tell every agent the run is over; close the session."""
        self._stop.set()
        for host in self.hosts.values():
            if host.joined:
                with contextlib.suppress(Exception):
                    host.order(hp.Leave())
        self.inbox(("stop",))
        for thread in self._threads:
            thread.join(timeout=2.0)
        for entity in self._entities:
            with contextlib.suppress(Exception):
                entity.undeclare()
        if self._presence is not None:
            self._presence.close()
        if self.session is not None:
            session: Any = self.session
            session.close()
            self.session = None
        if self._counters is not None:
            self._counters.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            if self._sock:
                os.unlink(self._sock)
        self.local.close()

    # ----- relaying ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        if self.session is not None:
            self.session.put(key, data)

    def inbox(self, item: tuple[Any, ...]) -> None:
        self._queue.put(item)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _on_up(self, sample: zenoh.Sample) -> None:
        actor = str(sample.key_expr).rsplit("/", 1)[1]
        self.inbox(("up", actor, sample.payload.to_bytes()))

    def counts(self, event: hp.Counts) -> None:
        """Copy an agent's counter rows into the run's counters, and keep the checkpoints
        it sent (a restart on another host gets them: :mod:`plexa.data.checkpoints`)."""
        if self._counters is not None:
            write_rows(self._counters, event.rows)
        self._usage.update(event.usage)
        for actor, state in event.states.items():
            try:
                self._checkpoints.write(actor, state)
            except (StoreError, OSError) as exc:
                log.warning("cannot keep %s's checkpoint: %s", actor, exc)

    def state(self, actor: str) -> bytes:
        """``actor``'s last checkpoint as this machine holds it (empty: none)."""
        try:
            return self._checkpoints.read(actor) or b""
        except (StoreError, OSError):
            return b""

    def usage(self, actor: str) -> tuple[float | None, int | None]:
        """CPU % and resident bytes of ``actor``'s process, as its host last reported."""
        return self._usage.get(actor, (None, None))

    def rows(self, actor: str) -> dict[str, bytes]:
        """The rows ``actor`` owns, as the run's counters hold them now."""
        if self._counters is None or self.spec is None:
            return {}
        return read_rows(self._counters, self.spec, [actor])

    def _relay(self) -> None:
        """Between the nexus's actors' socket and Zenoh, for every remote actor."""
        ctx: zmq.Context[Any] = zmq.Context.instance()
        dealers: dict[str, zmq.Socket[Any]] = {}
        names: dict[zmq.Socket[Any], str] = {}
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while True:
                for source, _ in poller.poll(500):
                    if source == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        continue
                    sock = source
                    while True:
                        try:
                            data = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.put(hp.run_key(self.run_id, "down", names[sock]), data)
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item[0] == "stop":
                        return
                    if item[0] == "dealer":
                        old = dealers.pop(item[1], None)
                        if old is not None:
                            poller.unregister(old)
                            names.pop(old, None)
                            old.close(linger=0)
                        dealer = ctx.socket(zmq.DEALER)
                        dealer.setsockopt(zmq.IDENTITY, item[1].encode())
                        dealer.setsockopt(zmq.LINGER, 0)
                        dealer.setsockopt(zmq.SNDTIMEO, 200)
                        dealer.connect(self._endpoint)
                        dealers[item[1]] = dealer
                        names[dealer] = item[1]
                        poller.register(dealer, zmq.POLLIN)
                    elif item[0] == "up":
                        dealer = dealers.get(item[1])
                        if dealer is not None:
                            with contextlib.suppress(zmq.ZMQError):
                                dealer.send(item[2])
        finally:
            for dealer in dealers.values():
                dealer.close(linger=0)


def wait_joined(launcher: HostsLauncher, scope: str, timeout: float = 10.0) -> hp.HostFacts:
    """Wait until ``scope``'s agent has joined (its facts), for tests and tools."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        host = launcher.hosts.get(scope)
        if host is not None and host.facts is not None and host.joined:
            return host.facts
        time.sleep(0.01)
    raise TimeoutError(f"host {scope} did not join within {timeout} s")
