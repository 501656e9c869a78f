"""The documents a run hands to the outside: the status object and every event's data.

Each is a frozen msgspec struct whose JSON (and msgpack) form is exactly what
``docs/status.md`` and ``docs/protocol.md`` show: ``msgspec.json.encode(status)`` is what
``plexa run --json`` prints. Fields that appear only sometimes (an actor's ``failure``, a
``restarting`` state's ``in_s``) are ``UNSET`` when absent, so they are left out rather than
written as ``null``. Every struct forbids unknown fields, so a document that drifts from its
definition fails to convert (``msgspec.convert(data, Status)``) instead of passing silently.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from plexa.core.jobs import JobInfo

__all__ = [
    "EVENT_KINDS",
    "EVENT_TYPES",
    "AbortedEvent",
    "ActorFacts",
    "ActorStatus",
    "FailureEvent",
    "FailureInfo",
    "ImprovedEvent",
    "LinkStatus",
    "LogEvent",
    "ProgressEvent",
    "ProgressInfo",
    "RefusedEvent",
    "RestartedEvent",
    "RunEvent",
    "RunFacts",
    "RunStatus",
    "StateEvent",
    "Status",
    "WarningEvent",
    "event_document",
]


class _Doc(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every document: frozen, keyword-only, strict about its fields."""


# ----- the status object ------------------------------------------------------------------------
class FailureInfo(_Doc, frozen=True, kw_only=True):
    """Why an actor's current process failed (``actors.NAME.failure``)."""

    kind: str
    """``crashed``, ``exception``, ``hung``, ``killed``... (``FailureKind``)."""
    phase: str
    """``spawn``, ``setup``, ``run``, ``stop`` (``Phase``)."""
    error: str
    """One line: the exception or the exit status."""
    traceback: str
    """The remote traceback, or ``""``."""


class ProgressInfo(_Doc, frozen=True, kw_only=True):
    """An actor's last ``self.progress(done, total, message)`` (``actors.NAME.progress``)."""

    done: float
    """Work done so far."""
    total: float | None
    """Work in all, when known."""
    message: str
    """What it is doing."""
    fields: dict[str, float | int | str] | UnsetType = UNSET
    """The named values it reported with it (``progress(..., loss=0.3)``), if any."""


class RunFacts(_Doc, frozen=True, kw_only=True):
    """What the nexus knows of the run itself, before the counters are read."""

    name: str
    """The run's name (``--name``, else the pipeline's)."""
    id: str
    """The run id, 8 hex digits."""
    state: str
    """The run's lifecycle state, or ``failed``."""
    busy: str
    """The lifecycle operation in progress, or ``""``."""


class RunStatus(RunFacts, frozen=True, kw_only=True):
    """``status.run``: the run's facts and its uptime."""

    uptime_s: float
    """Seconds since the pipeline was last told to run, frozen once it is drained."""


class ActorFacts(_Doc, frozen=True, kw_only=True):
    """What the nexus knows of one actor (its process and lifecycle), before the counters."""

    state: str
    """The actor's lifecycle state, including ``restarting`` and ``failed``."""
    pid: int | None
    """Its process id; ``None`` while it has no process."""
    restarts: int
    """How many times it was restarted."""
    host: str = ""
    """The host it runs on (its ``host:`` line); empty: the nexus's host."""
    progress: ProgressInfo | UnsetType = UNSET
    """Its last progress report, once it made one."""
    failure: FailureInfo | UnsetType = UNSET
    """Present only while its current process is failed."""
    node: str | UnsetType = UNSET
    """The Ray node its process runs on, ``IP (node id prefix)`` (``launch: ray`` only)."""


class ActorStatus(ActorFacts, frozen=True, kw_only=True):
    """``status.actors[NAME]``: the actor's facts and its counters."""

    msgs_in: int
    """Messages taken from all its inputs."""
    msgs_out: int
    """Messages put on its connected outputs."""
    rate_in: float
    """Messages in per second (over the last window; the run's mean once drained)."""
    rate_out: float
    """Messages out per second, likewise."""
    handler_mean_us: float | UnsetType | None = UNSET
    """Mean time of one handler or ``run_step`` call, µs (unset before counters exist)."""
    handler_p50_us: float | UnsetType | None = UNSET
    """Median handler time, µs."""
    handler_p99_us: float | UnsetType | None = UNSET
    """99th percentile handler time, µs."""
    cpu_percent: float | UnsetType | None = UNSET
    """CPU use of its process over the last window, % of one core (``None``: no window yet)."""
    rss_bytes: int | UnsetType | None = UNSET
    """Resident memory of its process, bytes (``None``: no process)."""


class LinkStatus(_Doc, frozen=True, kw_only=True):
    """``status.links["SRC.port->DST.port"]``: one link's counters."""

    policy: str
    """``block``, ``drop_oldest``, ``latest``..., as configured."""
    capacity: int
    """Slots, as configured."""
    sent: int
    """Messages put on the producing port."""
    received: int
    """Messages handed to the consumer."""
    dropped: int
    """Messages dropped by the policy."""
    lost: int
    """Messages lost (a ``block`` link that overflowed, or in flight when the run drained)."""
    in_flight: int
    """Sent but not yet received, dropped or lost."""
    depth: int
    """Messages waiting in the link now."""
    rate: float
    """Messages received per second over the last window."""
    bytes_per_s: float
    """Bytes sent per second over the last window."""
    latency_p50_us: float | None
    """Median put-to-handler latency, µs."""
    latency_p99_us: float | None
    """99th percentile latency, µs."""
    latency_buckets: list[int] = []
    """Messages timed since the run started (one in 8 on a local link, every one across
    hosts), by latency: entry ``k`` counts latencies in
    [1.024 * 2**(k-1), 1.024 * 2**k) µs (entry 0: below 1.024 µs; the last one: everything
    above). ``/metrics`` exposes it as a Prometheus histogram."""
    latency_sum_s: float = 0.0
    """Sum of the latencies counted in ``latency_buckets``, in seconds."""
    transport: str = "iceoryx2"
    """``iceoryx2`` (shared memory, both ends on one host) or ``zenoh`` (across hosts)."""


class Status(_Doc, frozen=True, kw_only=True):
    """The status object: ``plexa run --json``, ``plexa ctl NAME status``, ``metrics`` events."""

    run: RunStatus
    """The run as a whole."""
    actors: dict[str, ActorStatus]
    """Per actor, in configuration order."""
    links: dict[str, LinkStatus]
    """Per link, in configuration order."""


# ----- events ---------------------------------------------------------------------------------
class StateEvent(_Doc, frozen=True, kw_only=True):
    """``state``: an actor entered a lifecycle state."""

    actor: str
    """The actor."""
    state: str
    """Its new state."""
    in_s: float | UnsetType = UNSET
    """For ``restarting``: seconds until the restart."""


class FailureEvent(_Doc, frozen=True, kw_only=True):
    """``failure``: an actor failed."""

    actor: str
    """The actor."""
    kind: str
    """How (``FailureKind``)."""
    phase: str
    """Where in the lifecycle (``Phase``)."""
    error: str
    """One line."""
    traceback: str
    """The remote traceback, or ``""``."""
    exit_code: int | None = None
    """The process's exit code (negative: the signal), when it exited."""


class RestartedEvent(_Doc, frozen=True, kw_only=True):
    """``restarted``: a restarted actor is back where the run is."""

    actor: str
    """The actor."""
    restarts: int
    """Its restarts so far."""


class LogEvent(_Doc, frozen=True, kw_only=True):
    """``log``: one line of the merged log."""

    actor: str
    """Who logged it."""
    t: float
    """When, seconds since the epoch."""
    level: int
    """``logging`` level number."""
    logger: str
    """Logger name (``stdout`` / ``stderr`` for captured output)."""
    message: str
    """The line."""


class ProgressEvent(_Doc, frozen=True, kw_only=True):
    """``progress``: an actor's ``self.progress(...)``."""

    actor: str
    """The actor."""
    type: str = "progress"
    """The kind again (the actor's report is tagged with it)."""
    done: float
    """Work done."""
    total: float | None = None
    """Work in all, when known."""
    message: str = ""
    """What it is doing."""
    t: float = 0.0
    """When, seconds since the epoch."""
    fields: dict[str, float | int | str] | UnsetType = UNSET
    """The named values reported with it, if any."""


class ImprovedEvent(_Doc, frozen=True, kw_only=True):
    """``improved``: an actor's ``self.improved(result, score=..., summary=...)``."""

    actor: str
    """The actor."""
    type: str = "improved"
    """The kind again (the actor's report is tagged with it)."""
    result: Any = None
    """The partial result."""
    score: float | None = None
    """Its score, when given."""
    summary: str = ""
    """One line about it."""
    t: float = 0.0
    """When, seconds since the epoch."""


class AbortedEvent(_Doc, frozen=True, kw_only=True):
    """``aborted``: an actor's computation was aborted, with what it had."""

    actor: str
    """The actor."""
    type: str = "aborted"
    """The kind again (the actor's report is tagged with it)."""
    partial: Any = None
    """The partial result."""
    score: float | None = None
    """Its score, when given."""


class RunEvent(_Doc, frozen=True, kw_only=True):
    """``run``: a lifecycle command finished."""

    state: str
    """The run's state after it."""


class RefusedEvent(_Doc, frozen=True, kw_only=True):
    """``refused``: requests were refused (reported once per peer per interval)."""

    command: str
    """The refused command, cut to 60 characters (``""`` if the frame was unreadable)."""
    reason: str
    """``wrong or missing token`` or ``malformed request``."""
    peer: str
    """The sender's address (``""`` on ipc)."""
    more: int
    """Refusals from that peer since the last report."""


class WarningEvent(_Doc, frozen=True, kw_only=True):
    """``warning``: something went wrong that does not end the run (a full log disk)."""

    what: str
    """What it concerns (``log``)."""
    error: str
    """One line: what happened and where."""


EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    "state": StateEvent,
    "failure": FailureEvent,
    "restarted": RestartedEvent,
    "log": LogEvent,
    "metrics": Status,
    "progress": ProgressEvent,
    "improved": ImprovedEvent,
    "aborted": AbortedEvent,
    "run": RunEvent,
    "refused": RefusedEvent,
    "warning": WarningEvent,
    "job": JobInfo,
}
"""The data type of every event kind."""

EVENT_KINDS = tuple(EVENT_TYPES)
"""Every event kind a nexus publishes."""


def event_document(kind: str, data: Any) -> msgspec.Struct:
    """An event's data as its typed document; raises ``msgspec.ValidationError`` if it does
    not match, ``KeyError`` for an unknown kind."""
    doc: msgspec.Struct = msgspec.convert(data, EVENT_TYPES[kind])
    return doc
