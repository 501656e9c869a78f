"""The client protocol of a running nexus (version 1): requests, responses, events.

Requests go to the control endpoint (a zmq ROUTER; clients use DEALER), each answered by one
response. Events come from the output endpoint (a zmq PUB) as two frames: the event kind as
the topic, then the event. Every frame is msgpack; nothing on these sockets is unpickled.
See ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec

__all__ = [
    "COMMANDS",
    "MAX_DEPTH",
    "MAX_REQUEST_BYTES",
    "PROTOCOL_VERSION",
    "Command",
    "CurveKeys",
    "Event",
    "Request",
    "RequestHead",
    "Response",
    "tcp_address",
]

PROTOCOL_VERSION = 1

MAX_REQUEST_BYTES = 1 << 20
"""The largest request frame a nexus accepts (larger ones cost the sender its connection)."""

MAX_DEPTH = 32
"""The deepest nesting of lists and maps a request's ``args`` may have."""


class Command(enum.StrEnum):
    """Every command a nexus understands (some are refused in some states)."""

    SETUP = "setup"
    RUN = "run"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    QUIT = "quit"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    LOGS = "logs"
    PING = "ping"
    REVIVE = "revive"
    KILL = "kill"
    SET = "set"
    INVOKE = "invoke"
    ABORT = "abort"
    REPORT = "report"
    RECORD = "record"


COMMANDS = tuple(c.value for c in Command)
"""Every command name a nexus understands, as strings."""


class CurveKeys(msgspec.Struct, frozen=True, kw_only=True):
    """The CURVE keys of a run bound to tcp (``plexa server --bind``), z85-encoded.

    They are in the run record (mode 0600); whoever holds them and the token is admitted.
    """

    server_key: str
    """The server's public key: a client checks it is talking to this run."""
    client_key: str
    """The public key of the one client key pair the server admits."""
    client_secret: str
    """That pair's secret key."""


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


class RequestHead(msgspec.Struct, frozen=True, kw_only=True):
    """A request with its ``args`` still encoded: what a server reads before it trusts anyone.

    Decoding the head costs one pass over the frame at C speed and builds no Python objects
    for the arguments, so the token can be checked before any work an attacker could choose.
    """

    v: int = PROTOCOL_VERSION
    """As in :class:`Request`."""
    id: int = 0
    """As in :class:`Request`."""
    token: str = ""
    """As in :class:`Request`."""
    command: str
    """As in :class:`Request`."""
    actor: str | None = None
    """As in :class:`Request`."""
    args: msgspec.Raw = msgspec.Raw(b"")
    """The arguments, still msgpack."""

    def request(self) -> Request:
        """The whole request; raises ``ValueError`` if ``args`` is malformed or nests deeper
        than :data:`MAX_DEPTH`."""
        try:
            args = _args.decode(self.args) if len(self.args) else {}
        except RecursionError:
            raise ValueError(f"args nest deeper than {MAX_DEPTH} levels") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"malformed args: {exc}") from None
        if _depth(args) > MAX_DEPTH:
            raise ValueError(f"args nest deeper than {MAX_DEPTH} levels")
        return Request(
            v=self.v, id=self.id, token=self.token, command=self.command, actor=self.actor,
            args=args,
        )  # fmt: skip


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
    """One of ``plexa.core.documents.EVENT_KINDS`` (``state``, ``log``, ``metrics``...)."""
    t: float
    """Wall-clock time, seconds since the epoch."""
    seq: int
    """Event number, increasing by one per event: a gap means the subscriber missed some."""
    data: Any = None
    """The event's content (see docs/protocol.md)."""

    def document(self) -> msgspec.Struct:
        """``data`` as its typed document (:mod:`plexa.core.documents`), e.g. a ``Status``
        for ``metrics``; raises ``msgspec.ValidationError`` if it does not match."""
        from plexa.core.documents import event_document

        return event_document(self.kind, self.data)


def _depth(obj: Any) -> int:
    """How deeply lists and maps nest in ``obj`` (iteratively: no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


_enc = msgspec.msgpack.Encoder()
_req = msgspec.msgpack.Decoder(Request)
_head = msgspec.msgpack.Decoder(RequestHead)
_args = msgspec.msgpack.Decoder(dict[str, Any])
_resp = msgspec.msgpack.Decoder(Response)
_event = msgspec.msgpack.Decoder(Event)


def encode(obj: Request | Response | Event) -> bytes:
    """Serialise a protocol record."""
    return _enc.encode(obj)


def decode_request(data: bytes) -> Request:
    """Parse a request; raises ``msgspec.DecodeError`` or ``ValidationError`` if malformed."""
    req: Request = _req.decode(data)
    return req


def decode_head(data: bytes | memoryview) -> RequestHead:
    """Parse a request but not its ``args``; raises ``ValueError`` if malformed (including
    nesting too deep to skip)."""
    try:
        head: RequestHead = _head.decode(data)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(str(exc)) from None
    return head


def decode_response(data: bytes) -> Response:
    """Parse a response."""
    resp: Response = _resp.decode(data)
    return resp


def decode_event(data: bytes) -> Event:
    """Parse an event."""
    ev: Event = _event.decode(data)
    return ev


_TCP = re.compile(r"(?:tcp://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def tcp_address(text: str) -> tuple[str, int] | None:
    """``(host, port)`` from ``tcp://HOST:PORT`` or ``HOST:PORT`` (IPv6 in brackets, which
    are dropped), or None if ``text`` is not one or the port is not 1-65535."""
    match = _TCP.fullmatch(text.strip())
    if match is None or not 0 < int(match.group(2)) < 65536:
        return None
    return match.group(1).strip("[]"), int(match.group(2))
