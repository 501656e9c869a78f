"""An actor process's control thread: its only link to the nexus.

The main thread runs user code; this thread relays what the main thread sends (state
changes, replies, logs, reports) to the nexus, queues the nexus's commands for the next safe
point (waking the main thread), sends a heartbeat every ``heartbeat_interval`` with the
number of safe points passed, and notices when the nexus is gone: then it queues ``quit``,
and if user code does not yield within a second, it ends the process itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from plexa.core import messages as msgs
from plexa.core.lifecycle import Signal
from plexa.data.domain import Domain
from plexa.runtime.boot import end_descendants

if TYPE_CHECKING:
    from plexa.runtime.process import ActorProcess

__all__ = ["ControlThread", "NexusLogHandler", "Outbox"]


FLUSH = b"plexa:flush"
"""A marker on an outbox socket, never forwarded: the control thread answers it by setting
:attr:`Outbox.flushed` once everything sent before it on that socket was handed on."""


class Outbox:
    """Thread-safe sending to the nexus: each thread gets its own inproc PUSH socket."""

    def __init__(self, ctx: zmq.Context[Any], address: str) -> None:
        self._ctx = ctx
        self._address = address
        self._local = threading.local()
        self._sockets: list[zmq.Socket[Any]] = []
        self._lock = threading.Lock()
        self.flushed = threading.Event()

    def send(self, msg: msgs.Message, flags: int = 0) -> None:
        """Send ``msg`` from this thread (``zmq.NOBLOCK``: raise ``zmq.Again`` rather than
        wait, e.g. once the control thread that reads these sockets may have ended)."""
        self._socket().send(msgs.encode(msg), flags)

    def flush(self, timeout: float) -> bool:
        """Wait until what this thread sent is on its way to the nexus (handed to the
        control thread's socket, which zmq's own thread sends from): a failure report is
        then not overtaken by the exit that follows it, however long the process's teardown
        holds the interpreter. False if that did not happen within ``timeout`` s."""
        self.flushed.clear()
        self._socket().send(FLUSH)
        return self.flushed.wait(timeout)

    def _socket(self) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(self._address)
            self._local.sock = sock
            with self._lock:
                self._sockets.append(sock)
        return sock

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()


class NexusLogHandler(logging.Handler):
    """Forwards log records to the nexus."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._outbox.send(
                msgs.LogRecord(record.created, record.levelno, record.name, self.format(record))
            )
        except Exception:
            self.handleError(record)


class ControlThread:
    """Runs :meth:`run` in a daemon thread of ``proc``'s process."""

    def __init__(self, proc: ActorProcess) -> None:
        self.proc = proc

    def run(self) -> None:
        """Relay between the nexus and this process; runs until the process ends."""
        pull = self.proc.ctx.socket(zmq.PULL)
        pull.bind(f"inproc://{self.proc.name}-out")
        dealer = self.proc.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.proc.name.encode())
        dealer.setsockopt(zmq.LINGER, 500)
        dealer.setsockopt(zmq.SNDTIMEO, 200)  # a send never blocks for good: see forward()
        dealer.connect(self.proc.paths.endpoint("actors"))
        domain = Domain(self.proc.paths, f"{self.proc.name}-ctl")
        waker = domain.wake_service(self.proc.spec, self.proc.name).notifier_builder().create()
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        parent = self.proc.nexus_pid
        interval = self.proc.spec.settings.heartbeat_interval
        next_beat = 0.0
        orphaned_at = 0.0

        def forward(data: bytes) -> None:
            """Send to the nexus; waits while it is slow, gives up once it is gone."""
            if data == FLUSH:
                self.proc.outbox.flushed.set()
                return
            while True:
                try:
                    dealer.send(data)
                    return
                except zmq.Again:
                    if os.getppid() != parent:
                        return

        self.proc._ctl_ready.set()
        try:
            while not self.proc._done.is_set():
                for sock, _ in poller.poll(timeout=int(interval * 1000)):
                    if sock is pull:
                        while True:
                            try:
                                data = pull.recv(zmq.NOBLOCK)
                            except zmq.Again:
                                break
                            forward(data)
                    else:
                        self._receive(dealer, waker)
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + interval
                    forward(msgs.encode(msgs.Heartbeat(self.proc.loops)))
                if os.getppid() != parent:
                    if not orphaned_at:
                        orphaned_at = now
                        dealer.setsockopt(zmq.LINGER, 0)  # nobody will read what is queued
                        self._inject(msgs.Command(-1, Signal.QUIT.value), waker)
                    elif now - orphaned_at > 1.0:
                        end_descendants()
                        os._exit(3)  # the nexus is gone and user code will not yield
            while True:  # flush what the main thread sent last
                try:
                    data = pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                forward(data)
        finally:
            waker.delete()
            if self.proc.run_ending:  # the nexus removes the domain (ActorProcess.run_ending)
                self.proc.kept.append(domain.node)
            domain.close()
            dealer.close()
            pull.close()

    def _receive(self, dealer: zmq.Socket[Any], waker: Any) -> None:
        while True:
            try:
                data = dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = msgs.decode(data)
            except msgspec.DecodeError:
                continue
            if isinstance(msg, msgs.Command):
                self._inject(msg, waker)

    def _inject(self, cmd: msgs.Command, waker: Any) -> None:
        self.proc.commands.put(cmd)
        self.proc.pending = True
        waker.notify()
        if self.proc.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.proc.loop.call_soon_threadsafe(lambda: None)
