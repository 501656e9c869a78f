"""Control messages between the nexus and actor processes: small frozen msgspec records.

They travel as msgpack over zmq; nothing on a control socket is ever unpickled.
"""

from __future__ import annotations

from typing import Any

import msgspec

from plexa.core.lifecycle import ActorState, FailureKind, Phase

__all__ = [
    "Aborted",
    "Command",
    "Failure",
    "Heartbeat",
    "Hello",
    "Improved",
    "LogRecord",
    "Message",
    "Progress",
    "Reply",
    "StateChanged",
    "decode",
    "encode",
]


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    """An actor process started and connected (the spawn handshake)."""

    name: str
    """Actor name."""
    pid: int
    """Process id."""


class Command(msgspec.Struct, frozen=True, tag="command"):
    """The nexus asks an actor to apply a signal (or a named request) at its next safe point."""

    id: int
    """Request id, echoed in the reply."""
    signal: str
    """A :class:`plexa.core.lifecycle.Signal` value, or another request name."""
    args: dict[str, Any] = {}
    """Arguments of the request."""


class Reply(msgspec.Struct, frozen=True, tag="reply"):
    """An actor's answer to a command."""

    id: int
    """The command's id."""
    ok: bool
    """Whether the command was applied."""
    error: str = ""
    """Why not, when refused."""
    value: Any = None
    """A result, when the request has one."""
    traceback: str = ""
    """The remote traceback when the request raised in user code."""


class StateChanged(msgspec.Struct, frozen=True, tag="state"):
    """An actor entered a new state."""

    state: ActorState
    """The new state."""


class Failure(msgspec.Struct, frozen=True, tag="failure"):
    """User code of an actor raised (or the runtime failed); the process exits after this."""

    kind: FailureKind
    """How it failed."""
    phase: Phase
    """Where in the lifecycle."""
    error: str
    """The exception, one line."""
    traceback: str = ""
    """The formatted traceback."""


class LogRecord(msgspec.Struct, frozen=True, tag="log"):
    """A log record (or a line of captured output) from an actor."""

    t: float
    """Wall-clock time (seconds since the epoch)."""
    level: int
    """``logging`` level number."""
    logger: str
    """Logger name."""
    message: str
    """The formatted message."""


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat"):
    """The actor process is alive; ``loops`` counts its safe points so far."""

    loops: int
    """Safe points passed so far (unchanged while user code is stuck)."""


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """How far the actor's long computation has come."""

    done: float
    """Work done so far."""
    total: float | None = None
    """Total work, when known."""
    message: str = ""
    """A short note."""
    t: float = 0.0
    """Wall-clock time of the report."""
    fields: dict[str, float | int | str] = msgspec.field(default_factory=dict)
    """Named numbers (or short texts) that go with it (``progress(..., loss=0.3)``)."""


class Improved(msgspec.Struct, frozen=True, tag="improved"):
    """The actor found a better partial result."""

    result: Any = None
    """The result (msgpack-able; large results carry only ``summary``)."""
    score: float | None = None
    """Its score, when the actor gives one."""
    summary: str = ""
    """A short text form of the result."""
    t: float = 0.0
    """Wall-clock time."""


class Aborted(msgspec.Struct, frozen=True, tag="aborted"):
    """The actor's work was aborted; ``partial`` is its last improved result, if any."""

    partial: Any = None
    """The last improved result."""
    score: float | None = None
    """Its score."""


Message = (
    Hello
    | Command
    | Reply
    | StateChanged
    | Failure
    | LogRecord
    | Heartbeat
    | Progress
    | Improved
    | Aborted
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    """Serialise a control message."""
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Parse a control message; raises ``msgspec.DecodeError`` on anything malformed."""
    msg: Message = _decoder.decode(data)
    return msg
