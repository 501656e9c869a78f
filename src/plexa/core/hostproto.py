"""What a nexus and a host's agent say to each other over Zenoh: small frozen msgspec records,
msgpack on the wire, never pickle.

Keys (``RUN`` is the nexus's run id, ``HOST`` the host's scope name):

* ``plexa/agent/HOST/join``: the agent's queryable; the nexus asks with :class:`Join`, the
  agent answers :class:`Joined` or :class:`Refused` (protocol version, plexa version, key).
* ``plexa/run/RUN/to/HOST``: the nexus's orders (:class:`Spawn`, :class:`Kill`, :class:`Leave`).
* ``plexa/run/RUN/from/HOST``: what the agent reports (:class:`Started`, :class:`Exited`,
  :class:`Output`, :class:`Counts`).
* ``plexa/run/RUN/up/ACTOR`` and ``.../down/ACTOR``: an actor's control frames (the bytes of
  :mod:`plexa.core.messages`), relayed between the nexus's actors' socket and the agent's.
* ``plexa/hosts/member/NAME``: liveliness tokens, ``agent.HOST`` and ``nexus.RUN``.
"""

from __future__ import annotations

import os

import msgspec

__all__ = [
    "PROTOCOL",
    "Counts",
    "Exited",
    "HostFacts",
    "Join",
    "Joined",
    "Kill",
    "Leave",
    "Output",
    "Refused",
    "Spawn",
    "Started",
    "agent_member",
    "decode_event",
    "decode_order",
    "decode_reply",
    "encode",
    "join_key",
    "local_facts",
    "mismatch",
    "nexus_member",
    "run_key",
]

PROTOCOL = 1
"""The version of this protocol; a peer speaking another one is refused."""
PRESENCE = "hosts"
"""The presence namespace (``plexa/hosts/member/*``) of agents and nexuses."""


class HostFacts(msgspec.Struct, frozen=True, kw_only=True):
    """Who is on the other end: exchanged in the handshake."""

    protocol: int
    """:data:`PROTOCOL` of the sender."""
    plexa: str
    """The sender's plexa version."""
    host: str
    """Its machine's host name."""
    cores: int
    """CPU cores it has."""
    memory: int
    """Bytes of memory it has."""
    gpus: tuple[str, ...] = ()
    """GPUs it sees (names), if any."""


class Join(msgspec.Struct, frozen=True, kw_only=True, tag="join"):
    """The nexus asks an agent to serve a run."""

    facts: HostFacts
    """The nexus's side of the handshake."""
    run_id: str
    """The nexus's run id (keys, presence)."""
    run_name: str
    """The run's name (the agent's run record)."""
    scope: str
    """The host's scope name in the pipeline."""
    spec: bytes
    """The validated pipeline spec (JSON)."""
    key: str = ""
    """The agent's key, if it asks for one."""


class Joined(msgspec.Struct, frozen=True, kw_only=True, tag="joined"):
    """The agent serves the run."""

    facts: HostFacts
    """The agent's side of the handshake."""


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag="refused"):
    """The agent will not serve the run, and why."""

    reason: str
    facts: HostFacts | None = None


class Spawn(msgspec.Struct, frozen=True, kw_only=True, tag="spawn"):
    """Start a process for ``actor`` (its ``launch``-th)."""

    actor: str
    launch: int
    import_path: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    rows: dict[str, bytes] = {}
    """Its counter rows as the nexus holds them: the new process counts on from there."""
    state: bytes = b""
    """Its last checkpoint as the nexus holds it (stored bytes; empty: none), for the new
    process to restore from (:mod:`plexa.data.checkpoints`)."""


class Kill(msgspec.Struct, frozen=True, kw_only=True, tag="kill"):
    """Send ``signum`` to the process group of ``actor``'s ``launch``-th process."""

    actor: str
    launch: int
    signum: int


class Leave(msgspec.Struct, frozen=True, kw_only=True, tag="leave"):
    """The run ends on this host: stop what is left, remove the run's files."""


class Started(msgspec.Struct, frozen=True, kw_only=True, tag="started"):
    """``actor``'s ``launch``-th process runs as ``pid`` on the agent's host."""

    actor: str
    launch: int
    pid: int


class Exited(msgspec.Struct, frozen=True, kw_only=True, tag="exited"):
    """It ended with ``code`` (negative: the signal); ``error`` when it could not start."""

    actor: str
    launch: int
    code: int
    error: str = ""


class Output(msgspec.Struct, frozen=True, kw_only=True, tag="output"):
    """Bytes the process wrote on ``stream`` (``stdout`` or ``stderr``)."""

    actor: str
    launch: int
    stream: str
    data: bytes


class Counts(msgspec.Struct, frozen=True, kw_only=True, tag="counts"):
    """The agent's counter rows (raw int64 bytes) of what runs on its host, by row kind and
    name: the nexus copies them into the run's counters so status shows them."""

    rows: dict[str, bytes]
    usage: dict[str, tuple[float | None, int | None]] = {}
    """Per actor, CPU % and resident bytes of its process, as its host measures them."""
    states: dict[str, bytes] = {}
    """Per actor, its checkpoint written since the last report (stored bytes): the nexus
    keeps it, so a restart elsewhere gets it."""


Order = Spawn | Kill | Leave
Event = Started | Exited | Output | Counts
Answer = Joined | Refused

_encoder = msgspec.msgpack.Encoder()
_orders = msgspec.msgpack.Decoder(Order)
_events = msgspec.msgpack.Decoder(Event)
_answers = msgspec.msgpack.Decoder(Answer)
_joins = msgspec.msgpack.Decoder(Join)


def encode(msg: Join | Answer | Order | Event) -> bytes:
    """Serialise one record."""
    return _encoder.encode(msg)


def decode_join(data: bytes) -> Join:
    """Parse a join request (``msgspec.DecodeError`` on anything else)."""
    return _joins.decode(data)


def decode_reply(data: bytes) -> Answer:
    """Parse an agent's answer to a join."""
    answer: Answer = _answers.decode(data)
    return answer


def decode_order(data: bytes) -> Order:
    """Parse an order of the nexus."""
    order: Order = _orders.decode(data)
    return order


def decode_event(data: bytes) -> Event:
    """Parse an agent's report."""
    event: Event = _events.decode(data)
    return event


def join_key(host: str) -> str:
    """The key of ``host``'s agent's join queryable."""
    return f"plexa/agent/{host}/join"


def run_key(run_id: str, what: str, name: str) -> str:
    """``plexa/run/RUN/WHAT/NAME`` (``to``/``from`` a host, ``up``/``down`` an actor)."""
    return f"plexa/run/{run_id}/{what}/{name}"


def agent_member(host: str) -> str:
    """The presence name of ``host``'s agent."""
    return f"agent.{host}"


def nexus_member(run_id: str) -> str:
    """The presence name of the nexus of run ``run_id``."""
    return f"nexus.{run_id}"


def _gpus() -> tuple[str, ...]:
    found = []
    try:
        with os.scandir("/proc/driver/nvidia/gpus") as entries:
            for entry in entries:
                found.append(entry.name)
    except OSError:
        pass
    return tuple(sorted(found))


def local_facts(version: str) -> HostFacts:
    """This machine's side of the handshake."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return HostFacts(
        protocol=PROTOCOL,
        plexa=version,
        host=os.uname().nodename,
        cores=os.cpu_count() or 1,
        memory=memory,
        gpus=_gpus(),
    )


def mismatch(ours: HostFacts, theirs: HostFacts) -> str:
    """Why two sides cannot work together (empty: they can)."""
    if ours.protocol != theirs.protocol:
        return (
            f"protocol version {theirs.protocol} on {theirs.host}, "
            f"{ours.protocol} here: upgrade plexa on one side"
        )
    if ours.plexa != theirs.plexa:
        return f"plexa {theirs.plexa} on {theirs.host}, {ours.plexa} here: use one version"
    return ""
