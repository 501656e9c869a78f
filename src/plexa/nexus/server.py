"""The nexus's client endpoints: commands in (ROUTER), events out (PUB).

The server shares the nexus's single-threaded loop as an attachment
(:class:`plexa.nexus.attach.Attachment`), so a command is handled between two turns of the
loop. Requests are answered one at a
time, in the order they came: a command that waits (``setup``, ``invoke``...) drives the
nexus's loop while it waits, and requests arriving meanwhile are queued, not served from
inside that wait, except those that need no waiting (``ping``, ``status``...) from a client
with nothing queued before them, so a status display stays live during a long ``setup``.

Nothing a client sends can end the run: a frame is bounded in size (``MAXMSGSIZE``), its
token is checked before its arguments are decoded, the arguments' nesting is bounded, and
any exception while decoding or handling one request becomes an error reply, counted in
:meth:`ControlServer.statistics`. Refusals are logged at most once per peer per
``REFUSAL_LOG_INTERVAL``, truncated.

Status is built from the shared counters, never by asking actors. Events are published
without ever blocking: a subscriber that falls behind loses events at its high-water mark
(``seq`` gaps tell it so) and the pipeline does not notice.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import secrets
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from plexa.core import protocol as proto
from plexa.core.protocol import Command
from plexa.errors import InvalidTransition, PlexaError
from plexa.nexus import live
from plexa.nexus.attach import Attachment
from plexa.nexus.endpoints import Endpoints
from plexa.nexus.nexus import Nexus

__all__ = ["ControlServer", "ServerStatistics"]

log = logging.getLogger("plexa.server")

METRICS_INTERVAL = 0.5
MAX_QUEUED = 1024
"""Requests held while another is being handled; beyond that a request is refused at once."""
REFUSAL_LOG_INTERVAL = 10.0
"""A peer's refusals are logged (and published as ``refused`` events) once per interval."""
SHOWN_CHARS = 60
"""How much of a refused request's command is repeated in logs and events."""

Handler = Callable[[proto.Request], Any]

QUICK = frozenset(
    {Command.PING, Command.STATUS, Command.SNAPSHOT, Command.LOGS, Command.REPORT, Command.QUIT}
)
"""Commands that never wait on the nexus's loop, so they may be answered while another waits."""


class ServerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What the control endpoint has seen since the server started."""

    received: int
    """Request frames read from the socket."""
    answered: int
    """Responses sent (errors included)."""
    refused: int
    """Requests refused for a wrong or missing token."""
    malformed: int
    """Frames that were not a well-formed request (answered with an error)."""
    failed: int
    """Requests whose handler raised (answered with the error)."""
    dropped: int
    """Frames neither answered nor handled (no routing id, too many parts, socket errors)."""
    queued: int
    """Requests waiting now for the one being handled."""
    max_queued: int
    """The most requests that ever waited at once."""


class _Counts:
    def __init__(self) -> None:
        self.received = self.answered = self.refused = self.malformed = 0
        self.failed = self.dropped = self.max_queued = 0


class ControlServer(Attachment):
    """Serves one nexus to clients. ``serve()`` runs until a ``quit`` command (or ``stop()``)."""

    def __init__(self, nexus: Nexus, *, bind: str | None = None, token: str | None = None) -> None:
        self.nexus = nexus
        self.token = token or secrets.token_urlsafe(24)
        self.sockets = Endpoints(nexus.paths, nexus.spec.settings, bind)
        self.control, self.events = self.sockets.control, self.sockets.events
        self.bind = self.sockets.bind
        self.curve = self.sockets.curve
        """The keys of a tcp run (the server's public key, the client key pair it admits)."""
        self.quit_requested = False
        self._seq = 0
        self._next_metrics = 0.0
        self._counts = _Counts()
        self._queue: collections.deque[tuple[bytes, proto.Request | proto.Response]] = (
            collections.deque()
        )
        self._queued_from: collections.Counter[bytes] = collections.Counter()
        self._handling = ""
        self._refusals: dict[str, tuple[float, int]] = {}
        self._handlers: dict[str, tuple[Handler, bool]] = {
            name: (handler, name in QUICK) for name, handler in self._command_table().items()
        }
        nexus.attach(self)

    # ----- the attachment -----------------------------------------------------------------------
    def sources(self) -> list[Any]:
        """The control socket (read even while a request waits: the rest queue up)."""
        return [self.control]

    def on_readable(self, source: Any) -> None:
        """Requests arrived."""
        self._on_control()

    def on_event(self, kind: str, data: Any) -> None:
        """Publish every event of the run."""
        self.publish(kind, data)

    def record(self) -> dict[str, Any]:
        """What a client needs to connect, as written to the run record (mode 0600)."""
        record: dict[str, Any] = {
            "endpoints": {
                "actors": self.nexus.paths.endpoint("actors"),
                "control": self.sockets.control_endpoint,
                "events": self.sockets.events_endpoint,
            },
            "token": self.token,
            "protocol": proto.PROTOCOL_VERSION,
        }
        if self.curve is not None:
            record["curve"] = msgspec.to_builtins(self.curve)
        return record

    def _command_table(self) -> dict[Command, Handler]:
        nexus = self.nexus
        table: dict[Command, Handler] = {
            Command.PING: lambda req: "pong",
            Command.STATUS: lambda req: nexus.status(),
            Command.SNAPSHOT: lambda req: self.snapshot(),
            Command.LOGS: self._logs,
            Command.SETUP: self._lifecycle(lambda req: nexus.setup()),
            Command.RUN: self._lifecycle(lambda req: nexus.run(_actors(req))),
            Command.PAUSE: self._lifecycle(lambda req: nexus.pause(_actors(req))),
            Command.RESUME: self._lifecycle(lambda req: nexus.resume(_actors(req))),
            Command.STOP: self._lifecycle(lambda req: nexus.stop(_actors(req))),
            Command.QUIT: self._quit,
            Command.REVIVE: self._lifecycle(lambda req: nexus.revive(_one_actor(req))),
            Command.KILL: self._lifecycle(lambda req: nexus.kill(_one_actor(req))),
            Command.REPORT: lambda req: nexus.failure_report(),
            Command.ABORT: self._lifecycle(lambda req: nexus.abort(_actors(req))),
            Command.SET: lambda req: nexus.set_option(
                _one_actor(req), str(req.args.get("key")), req.args.get("value")
            ),
            Command.RECORD: lambda req: live.handle(nexus, req),  # a recorder or not yet
            Command.INVOKE: lambda req: nexus.invoke(
                _one_actor(req),
                str(req.args.get("method")),
                req.args.get("args"),
                float(req.args.get("timeout_s", 30.0)),
            ),
        }
        missing = set(Command) - set(table)
        if missing:  # pragma: no cover - caught by the tests the moment a command is added
            raise AssertionError(f"commands without a handler: {sorted(missing)}")
        return table

    @property
    def control_endpoint(self) -> str:
        """Where clients send commands."""
        return self.sockets.control_endpoint

    @property
    def events_endpoint(self) -> str:
        """Where clients subscribe to events."""
        return self.sockets.events_endpoint

    def record_fields(self) -> dict[str, Any]:
        """The run record's fields for clients, once the endpoints are bound: the nexus asks
        when it writes the record, inside the run directory, so the local sockets can be
        bound there first (if they were not already)."""
        self.sockets.bind_local()
        return self.record()

    def register(self, name: str, handler: Handler, *, quick: bool = False) -> None:
        """Add a command (later capabilities plug theirs in here). ``quick``: it never
        waits on the nexus's loop, so it may be answered while another command waits."""
        self._handlers[name] = (handler, quick)

    @property
    def refused(self) -> int:
        """Requests refused for a wrong or missing token."""
        return self._counts.refused

    def statistics(self) -> ServerStatistics:
        """Counts of what the control endpoint has received, answered and refused."""
        c = self._counts
        return ServerStatistics(
            received=c.received,
            answered=c.answered,
            refused=c.refused,
            malformed=c.malformed,
            failed=c.failed,
            dropped=c.dropped,
            queued=len(self._queue),
            max_queued=c.max_queued,
        )

    # ----- requests ---------------------------------------------------------------------------
    def _on_control(self) -> None:
        """Read every waiting frame, then answer what can be answered now, in order.

        Called from the nexus's loop, which a waiting command drives: then this only queues
        (so the socket is drained and the loop does not spin) and answers quick requests.
        """
        while True:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            except zmq.ZMQError:
                self._counts.dropped += 1
                break
            self._counts.received += 1
            if len(frames) < 2 or len(frames) > 3:
                self._counts.dropped += 1
                continue
            ident, frame = frames[0].bytes, frames[-1]
            self._arrived(ident, self._admit(frame))
        if not self._handling:
            self._drain_queue()

    def _arrived(self, ident: bytes, item: proto.Request | proto.Response) -> None:
        quick = isinstance(item, proto.Response) or self._is_quick(item.command)
        if self._handling and quick and not self._queued_from[ident]:
            self._reply(ident, item if isinstance(item, proto.Response) else self._handle(item))
        elif len(self._queue) >= MAX_QUEUED:
            self._reply(
                ident,
                proto.Response(
                    id=getattr(item, "id", 0),
                    ok=False,
                    error=f"busy: {len(self._queue)} requests are queued; try again later",
                ),
            )
        else:
            self._queue.append((ident, item))
            self._queued_from[ident] += 1
            self._counts.max_queued = max(self._counts.max_queued, len(self._queue))

    def _drain_queue(self) -> None:
        while self._queue:
            ident, item = self._queue.popleft()
            self._queued_from[ident] -= 1
            if not self._queued_from[ident]:
                del self._queued_from[ident]
            self._reply(ident, item if isinstance(item, proto.Response) else self._handle(item))

    def _is_quick(self, command: str) -> bool:
        entry = self._handlers.get(command)
        return entry is None or entry[1]  # unknown commands are answered at once, too

    def _reply(self, ident: bytes, response: proto.Response) -> None:
        try:
            self.control.send_multipart([ident, proto.encode(response)], zmq.NOBLOCK)
        except zmq.ZMQError:  # the peer went away, or its queue is full
            self._counts.dropped += 1
            return
        self._counts.answered += 1

    def _admit(self, frame: zmq.Frame) -> proto.Request | proto.Response:
        """The request in ``frame`` if it is well-formed and carries the token, else the
        error to answer with. The token is checked before ``args`` are decoded."""
        try:
            head = proto.decode_head(frame.buffer)
        except ValueError as exc:
            self._counts.malformed += 1
            self._note_refusal(frame, "malformed request")
            return proto.Response(ok=False, error=f"malformed request: {_shorten(str(exc))}")
        if head.v != proto.PROTOCOL_VERSION:
            self._counts.malformed += 1
            return proto.Response(
                id=head.id,
                ok=False,
                error=f"protocol version {head.v} not supported (server speaks "
                f"{proto.PROTOCOL_VERSION})",
            )
        if not hmac.compare_digest(head.token.encode(), self.token.encode()):
            self._counts.refused += 1
            self._note_refusal(frame, "wrong or missing token", head.command)
            return proto.Response(id=head.id, ok=False, error="refused: wrong or missing token")
        try:
            return head.request()
        except ValueError as exc:
            self._counts.malformed += 1
            return proto.Response(id=head.id, ok=False, error=f"malformed request: {exc}")

    def _handle(self, req: proto.Request) -> proto.Response:
        entry = self._handlers.get(req.command)
        if entry is None:
            known = ", ".join(sorted(self._handlers))
            return proto.Response(
                id=req.id, ok=False, error=f"unknown command {req.command!r} (commands: {known})"
            )
        outer, self._handling = self._handling, req.command
        try:
            value = entry[0](req)
        except PlexaError as exc:  # the message alone: a remote traceback has its own field
            tb = getattr(exc, "traceback", "")
            error = str(exc.args[0]) if tb and exc.args else str(exc)
            return proto.Response(id=req.id, ok=False, error=error, traceback=tb)
        except Exception as exc:  # a bug in a handler must not end the run
            self._counts.failed += 1
            log.exception("command %s failed", req.command)
            return proto.Response(
                id=req.id,
                ok=False,
                error=f"{type(exc).__name__}: {_shorten(str(exc), 500)}",
                traceback=traceback.format_exc(),
            )
        finally:
            self._handling = outer
        return proto.Response(id=req.id, ok=True, value=value)

    def _note_refusal(self, frame: zmq.Frame, reason: str, command: str | None = None) -> None:
        """Log and publish a refusal, at most once per peer per interval, truncated."""
        peer = _peer(frame)
        now = time.monotonic()
        last, suppressed = self._refusals.get(peer, (-REFUSAL_LOG_INTERVAL, 0))
        if now - last < REFUSAL_LOG_INTERVAL:
            self._refusals[peer] = (last, suppressed + 1)
            return
        if len(self._refusals) >= 4096:  # many peers: forget those not heard from lately
            self._refusals = {
                p: v for p, v in self._refusals.items() if now - v[0] < REFUSAL_LOG_INTERVAL
            }
        self._refusals[peer] = (now, 0)
        shown = "" if command is None else f" {_shorten(command)!r}"
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("refused%s from %s: %s%s", shown, peer or "a local peer", reason, more)
        self.nexus.emit(
            "refused",
            {
                "command": _shorten(command or ""),
                "reason": reason,
                "peer": peer,
                "more": suppressed,
            },
        )

    # ----- commands ---------------------------------------------------------------------------
    def _lifecycle(self, action: Callable[[proto.Request], None]) -> Handler:
        def run(req: proto.Request) -> Any:
            if self.nexus.busy:
                raise InvalidTransition(f"busy: {self.nexus.busy} is in progress")
            self.nexus.busy = req.command
            try:
                action(req)
            finally:
                self.nexus.busy = ""
            self.publish("run", {"state": self.nexus.state.value})
            return {
                "run": self.nexus.state.value,
                "actors": {n: a.state.value for n, a in self.nexus.actors.items()},
            }

        return run

    def _quit(self, req: proto.Request) -> Any:
        self.quit_requested = self.nexus.quit_requested = True
        return "quitting"

    def _logs(self, req: proto.Request) -> Any:
        lines = int(req.args.get("lines", 100))
        return list(self.nexus.logs.recent)[-lines:]

    def snapshot(self) -> dict[str, Any]:
        """What a client attaching late needs first: config, status, the last log lines."""
        spec = self.nexus.spec
        return {
            "seq": self._seq,
            "config": msgspec.to_builtins(spec),
            "status": self.nexus.status(),
            "logs": list(self.nexus.logs.recent)[-100:],
            "latest": self.nexus.latest,
        }

    # ----- events -----------------------------------------------------------------------------
    def publish(self, kind: str, data: Any) -> None:
        """Publish one event; never blocks (a slow subscriber loses events, not the run)."""
        self._seq += 1
        event = proto.Event(kind=kind, t=time.time(), seq=self._seq, data=data)
        with contextlib.suppress(zmq.Again):
            self.events.send_multipart([kind.encode(), proto.encode(event)], zmq.NOBLOCK)

    def tick(self) -> None:
        """Publish the metrics snapshot when it is due (about twice a second)."""
        now = time.monotonic()
        if now >= self._next_metrics:
            self._next_metrics = now + METRICS_INTERVAL
            self.publish("metrics", self.nexus.status())

    def serve(self, until: Callable[[], bool] | None = None) -> None:
        """Drive the nexus and answer clients until ``quit`` (or ``until()`` is true)."""
        while not self.quit_requested and not (until is not None and until()):
            self.nexus.poll(0.05)

    def close(self) -> None:
        """Answer what is still queued (the run is ending), then release the endpoints."""
        while self._queue:
            ident, item = self._queue.popleft()
            self._reply(ident, proto.Response(id=item.id, ok=False, error="the run is quitting"))
        self._queued_from.clear()
        self.nexus.detach(self)
        self.sockets.close()


def _actors(req: proto.Request) -> list[str] | None:
    return [req.actor] if req.actor else None


def _one_actor(req: proto.Request) -> str:
    if not req.actor:
        raise InvalidTransition(f"{req.command} needs an actor: plexa ctl NAME {req.command} ACTOR")
    return req.actor


def _peer(frame: zmq.Frame) -> str:
    """The sender's address as zmq knows it (an IP for tcp, "" for ipc)."""
    try:
        return str(frame.get("Peer-Address") or "")
    except (zmq.ZMQError, AttributeError):
        return ""


def _shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"
