"""The nexus's client endpoints: commands in (ROUTER), events out (PUB).

The server shares the nexus's single-threaded loop (:meth:`Nexus.add_source`), so a
command is handled between two polls of the actors' socket. Status is built from the shared
counters, never by asking actors. Events are published without ever blocking: a subscriber
that falls behind loses events at its high-water mark (``seq`` gaps tell it so) and the
pipeline does not notice.
"""

from __future__ import annotations

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
from plexa.errors import ActorFailed, InvalidTransition, PlexaError, Timeout
from plexa.nexus.nexus import Nexus

__all__ = ["ControlServer"]

log = logging.getLogger("plexa.server")

METRICS_INTERVAL = 0.5
EVENT_HWM = 1000


class ControlServer:
    """Serves one nexus to clients. ``serve()`` runs until a ``quit`` command (or ``stop()``)."""

    def __init__(self, nexus: Nexus, *, bind: str = "127.0.0.1", token: str | None = None) -> None:
        self.nexus = nexus
        self.bind = bind
        self.token = token or secrets.token_urlsafe(24)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.events = self.ctx.socket(zmq.PUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SNDHWM, EVENT_HWM)
        self.control_endpoint = self._bind(self.control)
        self.events_endpoint = self._bind(self.events)
        self.quit_requested = False
        self.refused = 0
        self._seq = 0
        self._next_metrics = 0.0
        self._handlers: dict[str, Callable[[proto.Request], Any]] = {
            "ping": lambda req: "pong",
            "status": lambda req: self.nexus.status(),
            "snapshot": lambda req: self.snapshot(),
            "logs": self._logs,
            "setup": self._lifecycle(lambda req: self.nexus.setup()),
            "run": self._lifecycle(lambda req: self.nexus.run(_actors(req))),
            "pause": self._lifecycle(lambda req: self.nexus.pause(_actors(req))),
            "resume": self._lifecycle(lambda req: self.nexus.resume(_actors(req))),
            "stop": self._lifecycle(lambda req: self.nexus.stop(_actors(req))),
            "quit": self._quit,
            "revive": self._lifecycle(lambda req: self.nexus.revive(_one_actor(req))),
            "kill": self._lifecycle(lambda req: self.nexus.kill(_one_actor(req))),
            "report": lambda req: self.nexus.failure_report(),
            "abort": self._lifecycle(lambda req: self.nexus.abort(_actors(req))),
            "set": lambda req: self.nexus.set_option(
                _one_actor(req), str(req.args.get("key")), req.args.get("value")
            ),
            "invoke": lambda req: self.nexus.invoke(
                _one_actor(req),
                str(req.args.get("method")),
                req.args.get("args"),
                float(req.args.get("timeout_s", 30.0)),
            ),
        }
        nexus.add_source(self.control, self._on_control)
        nexus.listeners.append(self.publish)
        nexus.record_extra.update(
            {
                "endpoints": {
                    "actors": nexus.paths.endpoint("actors"),
                    "control": self.control_endpoint,
                    "events": self.events_endpoint,
                },
                "token": self.token,
                "protocol": proto.PROTOCOL_VERSION,
            }
        )

    def _bind(self, sock: zmq.Socket[Any]) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        if ":" in self.bind:
            sock.setsockopt(zmq.IPV6, 1)
        sock.bind(f"tcp://{host}:0")
        endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return endpoint

    def register(self, handler_name: str, handler: Callable[[proto.Request], Any]) -> None:
        """Add a command (later capabilities plug theirs in here)."""
        self._handlers[handler_name] = handler

    # ----- requests ---------------------------------------------------------------------------
    def _on_control(self) -> None:
        while True:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            ident, payload = frames[0], frames[-1]
            response = self._answer(payload)
            if response is not None:
                self.control.send_multipart([ident, proto.encode(response)])

    def _answer(self, payload: bytes) -> proto.Response | None:
        try:
            req = proto.decode_request(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.refused += 1
            return proto.Response(ok=False, error=f"malformed request: {exc}")
        if req.v != proto.PROTOCOL_VERSION:
            return proto.Response(
                id=req.id,
                ok=False,
                error=f"protocol version {req.v} not supported (server speaks "
                f"{proto.PROTOCOL_VERSION})",
            )
        if not hmac.compare_digest(req.token.encode(), self.token.encode()):
            self.refused += 1
            log.warning("refused %r: wrong or missing token", req.command)
            self.nexus.emit("refused", {"command": req.command, "reason": "bad token"})
            return proto.Response(id=req.id, ok=False, error="refused: wrong or missing token")
        handler = self._handlers.get(req.command)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return proto.Response(
                id=req.id, ok=False, error=f"unknown command {req.command!r} (commands: {known})"
            )
        try:
            value = handler(req)
        except (InvalidTransition, Timeout, ActorFailed, PlexaError) as exc:
            return proto.Response(
                id=req.id, ok=False, error=str(exc), traceback=getattr(exc, "traceback", "")
            )
        except Exception as exc:  # a bug in a handler must not end the run
            log.exception("command %s failed", req.command)
            return proto.Response(
                id=req.id,
                ok=False,
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
        return proto.Response(id=req.id, ok=True, value=value)

    def _lifecycle(self, action: Callable[[proto.Request], None]) -> Callable[[proto.Request], Any]:
        def run(req: proto.Request) -> Any:
            if self.nexus.busy:
                raise InvalidTransition(f"busy: {self.nexus.busy} is in progress")
            self.nexus.busy = req.command
            try:
                action(req)
            finally:
                self.nexus.busy = ""
            self.publish("run", {"state": self.nexus.state})
            return {
                "run": self.nexus.state,
                "actors": {n: a.state.value for n, a in self.nexus.actors.items()},
            }

        return run

    def _quit(self, req: proto.Request) -> Any:
        self.quit_requested = True
        return "quitting"

    def _logs(self, req: proto.Request) -> Any:
        lines = int(req.args.get("lines", 100))
        return list(self.nexus.recent_logs)[-lines:]

    def snapshot(self) -> dict[str, Any]:
        """What a client attaching late needs first: config, status, the last log lines."""
        spec = self.nexus.spec
        return {
            "seq": self._seq,
            "config": msgspec.to_builtins(spec),
            "status": self.nexus.status(),
            "logs": list(self.nexus.recent_logs)[-100:],
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
            self.tick()

    def close(self) -> None:
        """Release the endpoints."""
        if self.publish in self.nexus.listeners:
            self.nexus.listeners.remove(self.publish)
        self.control.close(0)
        self.events.close(0)
        self.ctx.term()


def _actors(req: proto.Request) -> list[str] | None:
    return [req.actor] if req.actor else None


def _one_actor(req: proto.Request) -> str:
    if not req.actor:
        raise InvalidTransition(f"{req.command} needs an actor: plexa ctl NAME {req.command} ACTOR")
    return req.actor
