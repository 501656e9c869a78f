"""The client protocol of a running nexus (version 1): requests, responses, events.

Requests go to the control endpoint (a zmq ROUTER; clients use DEALER), each answered by one
response. Events come from the output endpoint (a zmq PUB) as two frames: the event kind as
the topic, then the event. Every frame is msgpack; nothing on these sockets is unpickled.
See ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["COMMANDS", "PROTOCOL_VERSION", "Event", "Request", "Response"]

PROTOCOL_VERSION = 1

COMMANDS = (
    "setup",
    "run",
    "pause",
    "resume",
    "stop",
    "quit",
    "status",
    "snapshot",
    "logs",
    "ping",
    "revive",
    "kill",
    "set",
    "invoke",
    "abort",
)
"""Every command name a nexus understands (some are refused in some states)."""


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A client's command."""

    v: int = PROTOCOL_VERSION
    """Protocol version the client speaks."""
    id: int = 0
    """Chosen by the client, echoed in the response."""
    token: str = ""
    """The run's access token (from its run record)."""
    command: str
    """One of :data:`COMMANDS`."""
    actor: str | None = None
    """Apply to this actor only (lifecycle commands), or the actor addressed."""
    args: dict[str, Any] = {}
    """Command arguments."""


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The nexus's answer to one request."""

    v: int = PROTOCOL_VERSION
    """Protocol version of the nexus."""
    id: int = 0
    """The request's id (0 when the request could not be parsed)."""
    ok: bool
    """Whether the command was carried out."""
    error: str = ""
    """Why not, when ``ok`` is false."""
    value: Any = None
    """The command's result (``status``: the status object)."""
    traceback: str = ""
    """A remote traceback, when the error came from actor code."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened in the run, published on the output endpoint."""

    v: int = PROTOCOL_VERSION
    """Protocol version."""
    kind: str
    """``state``, ``failure``, ``log``, ``metrics``, ``progress``, ``improved`` or ``run``."""
    t: float
    """Wall-clock time, seconds since the epoch."""
    seq: int
    """Event number, increasing by one per event: a gap means the subscriber missed some."""
    data: Any = None
    """The event's content (see docs/protocol.md)."""


_enc = msgspec.msgpack.Encoder()
_req = msgspec.msgpack.Decoder(Request)
_resp = msgspec.msgpack.Decoder(Response)
_event = msgspec.msgpack.Decoder(Event)


def encode(obj: Request | Response | Event) -> bytes:
    """Serialise a protocol record."""
    return _enc.encode(obj)


def decode_request(data: bytes) -> Request:
    """Parse a request; raises ``msgspec.DecodeError`` or ``ValidationError`` if malformed."""
    req: Request = _req.decode(data)
    return req


def decode_response(data: bytes) -> Response:
    """Parse a response."""
    resp: Response = _resp.decode(data)
    return resp


def decode_event(data: bytes) -> Event:
    """Parse an event."""
    ev: Event = _event.decode(data)
    return ev
