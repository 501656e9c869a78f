"""One agent's host as the nexus's launcher sees it (:mod:`plexa.launch.remote`): the actor
processes it runs for this run (:class:`RemoteProcess`, whose output, exits and signals travel
over Zenoh) and its join (:class:`Host`: ask, compare versions, start what waits for it,
notice it leave)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import zenoh

from plexa.core import hostproto as hp
from plexa.core.lifecycle import FailureKind
from plexa.core.spec import HostSpec

if TYPE_CHECKING:
    from plexa.launch.remote import HostsLauncher

__all__ = ["JOIN_TIMEOUT_S", "Host", "RemoteProcess"]

JOIN_TIMEOUT_S = 5.0
"""How long one join request waits for the agent's answer."""


class RemoteProcess:
    """An actor process on another host (a :class:`plexa.launch.base.ActorProcess`)."""

    def __init__(self, label: str, host: Host, launch: int) -> None:
        self._label = label
        self.host = host
        self.scope = host.scope
        """The host it runs on."""
        self.launch = launch
        self.remote_pid = 0
        self.code: int | None = None
        self.started = False
        """The agent was told to start it (it waits while its host is absent)."""
        self.why: tuple[FailureKind, str] | None = None
        self._pipes = {name: os.pipe2(os.O_CLOEXEC) for name in ("stdout", "stderr")}
        for r, w in self._pipes.values():
            os.set_blocking(r, False)
            os.set_blocking(w, False)
        self._writing = True

    @property
    def label(self) -> str:
        """The actor's name."""
        return self._label

    @property
    def pid(self) -> int:
        """Its process id on its host (0 until the agent has started it)."""
        return self.remote_pid

    def alive(self) -> bool:
        """True until the agent reported its end (or its host left)."""
        return self.code is None

    def exit_code(self) -> int | None:
        """Its exit code as the agent reported it (negative: the signal)."""
        return self.code

    def failure(self) -> tuple[FailureKind, str] | None:
        """Why it ended when that was not its own doing (its host left, or refused the run)."""
        return self.why

    def send(self, sig: signal.Signals) -> None:
        """Signal its process group on its host (through the agent)."""
        if self.code is not None:
            return
        if not self.started:
            if sig in (signal.SIGTERM, signal.SIGKILL):  # never started: nothing to stop
                self.ended(-int(sig))
            return
        self.host.order(hp.Kill(actor=self._label, launch=self.launch, signum=int(sig)))

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """The read ends of the pipes its forwarded output is written into."""
        return [(r, name) for name, (r, _) in self._pipes.items()]

    def write(self, stream: str, data: bytes) -> None:
        """Forwarded output (dropped if the nexus does not keep up: a log, not data)."""
        pipe = self._pipes.get(stream)
        if pipe is not None and self._writing:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(pipe[1], data)

    def ended(self, code: int, why: tuple[FailureKind, str] | None = None) -> None:
        """It is gone: the pipes reach their end, the nexus sees the exit."""
        if self.code is not None:
            return
        self.why = why
        if self._writing:
            self._writing = False
            for _, w in self._pipes.values():
                with contextlib.suppress(OSError):
                    os.close(w)
        self.code = code

    def close(self) -> None:
        """Close the pipes (after its end and output were read)."""
        self.ended(self.code if self.code is not None else -int(signal.SIGKILL))
        for r, _ in self._pipes.values():
            with contextlib.suppress(OSError):
                os.close(r)
        self._pipes = {}


class Host:
    """One agent as the nexus sees it: joined or not, and the processes it runs."""

    def __init__(self, launcher: HostsLauncher, spec: HostSpec) -> None:
        self.launcher = launcher
        self.spec = spec
        self.scope = spec.name
        self.joined = False
        self.departed = False
        """Its agent joined and then left (it may come back, or be replaced)."""
        self.refused = ""
        self.facts: hp.HostFacts | None = None
        self.procs: dict[str, RemoteProcess] = {}
        self.lock = threading.Lock()
        self.present = threading.Event()
        self.key = Path(spec.key_file).read_text().strip() if spec.key_file else ""

    def order(self, order: hp.Order) -> None:
        self.launcher.put(hp.run_key(self.launcher.run_id, "to", self.scope), hp.encode(order))

    def start(self, proc: RemoteProcess) -> None:
        """Tell the agent to start ``proc`` (now if joined, else once it is)."""
        with self.lock:
            self.procs[proc.label] = proc
            if self.refused:
                proc.ended(-1, (FailureKind.CRASHED, f"host {self.scope} refused: {self.refused}"))
            elif self.joined:
                self._spawn(proc)

    def _spawn(self, proc: RemoteProcess) -> None:
        proc.started = True
        request = self.launcher.requests[proc.label]
        self.order(
            hp.Spawn(
                actor=proc.label,
                launch=proc.launch,
                import_path=request.import_path,
                env=request.env,
                rows=self.launcher.rows(proc.label),
                state=self.launcher.state(proc.label),
            )
        )

    def on_event(self, sample: zenoh.Sample) -> None:
        try:
            event = hp.decode_event(sample.payload.to_bytes())
        except msgspec.DecodeError:
            return
        if isinstance(event, hp.Counts):
            self.launcher.counts(event)
            return
        proc = self.procs.get(event.actor)
        if proc is None or proc.launch != event.launch:
            return
        if isinstance(event, hp.Started):
            proc.remote_pid = event.pid
        elif isinstance(event, hp.Output):
            proc.write(event.stream, event.data)
        elif event.error:
            proc.ended(event.code, (FailureKind.CRASHED, f"{self.scope}: {event.error}"))
        else:
            proc.ended(event.code)

    def left(self) -> None:
        """Its agent is gone: every process it ran is lost."""
        with self.lock:
            self.departed = self.departed or self.joined
            self.joined = False
            for proc in self.procs.values():
                if proc.started:
                    proc.ended(
                        -int(signal.SIGKILL),
                        (FailureKind.HOST_LOST, f"host {self.scope} left the run"),
                    )

    def run(self, session: zenoh.Session, stop: threading.Event) -> None:
        """Join the agent whenever it is present (a thread per host)."""
        while not stop.is_set():
            if self.joined or self.refused or not self.present.wait(0.2):
                stop.wait(0.05)
                continue
            answer = self._ask(session)
            if isinstance(answer, hp.Joined):  # both sides check: an old agent may not
                why = hp.mismatch(self.launcher.facts, answer.facts)
                if why:
                    self.order(hp.Leave())
                    answer = hp.Refused(reason=why, facts=answer.facts)
            with self.lock:
                if isinstance(answer, hp.Refused):
                    self.refused = answer.reason
                    for proc in self.procs.values():
                        proc.ended(
                            -1, (FailureKind.CRASHED, f"host {self.scope} refused: {answer.reason}")
                        )
                elif isinstance(answer, hp.Joined):
                    self.facts, self.joined = answer.facts, True
                    for proc in self.procs.values():
                        if not proc.started and proc.code is None:
                            self._spawn(proc)
            if answer is None:
                stop.wait(0.2)

    def _ask(self, session: zenoh.Session) -> hp.Answer | None:
        launcher = self.launcher
        assert launcher.spec is not None
        join = hp.Join(
            facts=launcher.facts,
            run_id=launcher.run_id,
            run_name=launcher.spec.name,
            scope=self.scope,
            spec=msgspec.json.encode(launcher.spec),
            key=self.key,
        )
        try:
            replies = session.get(
                hp.join_key(self.scope), payload=hp.encode(join), timeout=JOIN_TIMEOUT_S
            )
            for reply in replies:
                if reply.ok is not None:
                    return hp.decode_reply(reply.ok.payload.to_bytes())
        except (msgspec.DecodeError, zenoh.ZError):
            return None
        return None
