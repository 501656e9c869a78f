"""One turn of the nexus's loop: wait for anything, hand each thing to whoever owns it.

What can arrive: a message from an actor (on the actors' socket), a line of an actor's
output (on its pipes), a request on an attached edge's socket, a deadline (a restart due, a
log record to write). What is checked every turn: process exits and hangs (the fleet), and
the attachments' ticks.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from plexa.core import messages as msgs
from plexa.core.lifecycle import Signal
from plexa.nexus.attach import Attachment
from plexa.nexus.fleet import Fleet
from plexa.nexus.logs import LogMerger

__all__ = ["IDLE_POLL_S", "Loop"]

IDLE_POLL_S = 0.1
"""The longest one turn waits for anything (actors heartbeat faster than this)."""


class Loop:
    """The actors' socket, the output pipes and the attachments, polled together."""

    def __init__(
        self, router: zmq.Socket[Any], logs: LogMerger, fleet: Fleet, attachments: list[Attachment]
    ) -> None:
        self.router = router
        self.logs = logs
        self.fleet = fleet
        self.attachments = attachments
        self.replies: dict[int, msgs.Reply] = {}
        """Actors' replies by request id, until the waiting command takes them."""
        self._ids = 0

    def send(self, name: str, command: Signal | str, **args: Any) -> int:
        """Send ``command`` to actor ``name``; its request id, or -1 if it is not reachable."""
        self._ids += 1
        frame = msgs.encode(msgs.Command(self._ids, str(command), args))
        try:
            self.router.send_multipart([name.encode(), frame])
        except zmq.ZMQError:  # not connected (yet, or any more)
            return -1
        return self._ids

    def turn(self, timeout: float) -> None:
        """Wait up to ``timeout`` s (less if a deadline is nearer) and handle what came."""
        supervisor = self.fleet.supervisor
        supervisor.tick()
        wait = min(timeout, IDLE_POLL_S)
        due = supervisor.next_deadline()
        if due is not None:
            wait = min(wait, max(0.0, due - supervisor.clock()))
        if self.logs.pending is not None:
            wait = min(wait, max(0.0, self.logs.pending - time.time()))
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        for fd in self.logs.pipes:
            poller.register(fd, zmq.POLLIN)
        owners: dict[Any, Attachment] = {}
        for attachment in self.attachments:
            for source in attachment.sources():
                owners[source] = attachment
                poller.register(source, zmq.POLLIN)
        for source, _ in poller.poll(max(int(wait * 1000), 0)):
            if source is self.router:
                self._drain()
            elif source in owners:
                owners[source].on_readable(source)
            elif isinstance(source, int) and source in self.logs.pipes:
                self.logs.read(source)
        self.fleet.check()
        self.logs.flush()
        for attachment in list(self.attachments):
            attachment.tick()

    def _drain(self) -> None:
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) == 2:
                self._handle(frames[0].decode(errors="replace"), frames[1])

    def _handle(self, name: str, data: bytes) -> None:
        if name not in self.fleet.entries:
            return
        try:
            msg = msgs.decode(data)
        except Exception:  # a torn or foreign frame on the actors' socket: ignore it
            return
        if isinstance(msg, msgs.Reply):
            self.fleet.supervisor.seen(name)
            self.replies[msg.id] = msg
        elif isinstance(msg, msgs.LogRecord):
            self.fleet.supervisor.seen(name)
            self.logs.add(name, msg)
        elif isinstance(msg, (msgs.Progress, msgs.Improved, msgs.Aborted)):
            self.fleet.supervisor.seen(name)
            self.fleet.on_report(name, msg)
        else:
            self.fleet.on_message(name, msg)
