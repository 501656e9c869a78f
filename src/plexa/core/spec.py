"""Typed pipeline specs: what a YAML file says once it has been validated.

Specs are frozen records with no I/O; :mod:`plexa.core.config` builds them from files.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from plexa.core.hooks import WebhookSpec
from plexa.core.jobs import JobSpec

__all__ = [
    "ActorSpec",
    "HostSpec",
    "HostTls",
    "LinkSpec",
    "OnFailure",
    "PipelineSpec",
    "Policy",
    "RaySettings",
    "RecordSpec",
    "Resources",
    "Restart",
    "Settings",
]


class Policy(enum.StrEnum):
    """What a link does when its consumer falls behind."""

    BLOCK = "block"
    """Lossless: the producer waits for room (backpressure). The default."""
    DROP_OLDEST = "drop_oldest"
    """The producer never waits; the oldest queued message is dropped and counted."""
    LATEST = "latest"
    """The producer never waits; the consumer takes only the newest queued message and the
    older ones are counted as dropped."""


class Restart(enum.StrEnum):
    """When the nexus brings a failed actor back."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class OnFailure(enum.StrEnum):
    """What the pipeline does when an actor fails for good."""

    STOP = "stop"
    CONTINUE = "continue"


class RaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where a run on Ray finds its cluster (``settings.ray``; see ``docs/ray.md``)."""

    address: str = ""
    """The cluster's address (``HOST:PORT`` of its GCS, or ``auto``); empty: plexa starts a
    local Ray instance for the run and stops it at the end."""
    num_cpus: int | None = None
    """CPUs of the local Ray instance (None: the machine's); ignored with ``address``."""
    object_store_memory: int = 80 * 2**20
    """Bytes of the local instance's object store (only the pool's tasks use it)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Run-wide settings (the ``settings:`` block)."""

    store_size: int = 256 * 2**20
    """Bytes reserved for the object store (LMDB map size)."""
    control: str | None = None
    """A fixed ``tcp://HOST:PORT`` for clients' commands (encrypted and authenticated with
    CurveZMQ, as with ``plexa server --bind``); None: an ipc socket in the run directory."""
    output: str | None = None
    """A fixed ``tcp://HOST:PORT`` for published events (CurveZMQ too); None: an ipc socket in
    the run directory, or an OS-chosen port beside a fixed ``control``."""
    setup_timeout: float = 30.0
    """Seconds an actor may take to start and finish ``setup`` before it counts as hung."""
    stop_timeout: float = 5.0
    """Seconds granted at each rung of the stop ladder (ask, then SIGTERM)."""
    drain_timeout: float = 5.0
    """Seconds the nexus waits for queued messages to be handled when stopping."""
    heartbeat_interval: float = 0.1
    """Seconds between an actor's heartbeats."""
    hang_timeout: float = 5.0
    """Seconds without a heartbeat after which an actor counts as hung."""
    on_failure: OnFailure = OnFailure.STOP
    """What the pipeline does when an actor fails and will not be restarted."""
    metrics: bool = True
    """Measure link latency and handler time per message (cheap; off only to measure its cost)."""
    store_path: str = ""
    """A directory on disk for the object store, kept across runs and reopened by the next
    (``settings.store: {path: DIR, size: 1GB}``); empty: in the run's shared memory."""
    use_hdd: bool = False
    """improv's spelling: the store on disk, in the pipeline's data directory."""
    use_watcher: bool = False
    """improv's spelling of ``record: all``: record every output, losslessly, to
    ``{name}-{time}.mcap`` in the working directory (see ``docs/recording.md``)."""
    launch: str = "local"
    """Where actor processes run: ``local`` (this machine) or ``ray`` (one Ray actor each)."""
    pool: str = "local"
    """Where ``map``/``imap`` run: ``local`` (worker processes) or ``ray`` (Ray tasks)."""
    ray: RaySettings = msgspec.field(default_factory=RaySettings)
    """The Ray cluster of ``launch: ray`` and ``pool: ray``."""


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """What an actor needs of the node it is placed on (its ``resources:``), for launchers
    that place actors (Ray); the local launcher ignores it."""

    num_cpus: float = 0.0
    """CPUs reserved (0: the actor fits anywhere, like a local process)."""
    num_gpus: float = 0.0
    """GPUs reserved (fractions share one)."""
    memory: int = 0
    """Bytes of memory reserved (0: none)."""
    custom: dict[str, float] = msgspec.field(default_factory=dict)
    """Custom resources a node must offer (``{camera: 1}``)."""
    node: str = ""
    """Run on this node only (a Ray node id, or its IP address); empty: anywhere."""
    soft: bool = False
    """With ``node``: prefer that node, but run elsewhere if it is gone or full."""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Node labels the node must carry (``{zone: lab-2}``)."""


class HostTls(msgspec.Struct, frozen=True, kw_only=True):
    """Mutual TLS files of this side of a cross-host session (``settings.tls``)."""

    ca: str
    """The CA that signs every host's certificate."""
    cert: str
    """This host's certificate."""
    key: str
    """This host's private key."""


class HostSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One other machine of the pipeline (an entry under ``hosts:``): where its agent is."""

    name: str
    """The host's scope name, as actors' ``host:`` lines name it."""
    endpoint: str
    """The agent's Zenoh endpoint the nexus connects to (``tls/HOST:7447``)."""
    key_file: str = ""
    """A file holding the agent's key (its ``--key-file``); empty: no key asked."""
    insecure: bool = False
    """Allow plain ``tcp/``, even on loopback (tests and closed networks only)."""


class ActorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One actor (an entry under ``actors:``)."""

    name: str
    """The actor's unique name in the pipeline."""
    target: str
    """Import path of its class, ``package.module:Class``."""
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    """Keyword arguments passed to the actor's ``setup``."""
    restart: Restart = Restart.NEVER
    """Restart policy."""
    max_restarts: int = 3
    """Restarts allowed within ``restart_window`` seconds before the actor fails for good."""
    restart_window: float = 60.0
    """Window, in seconds, over which ``max_restarts`` is counted."""
    backoff: float = 0.1
    """Seconds before the first restart; doubles with each further restart in the window."""
    progress_delta: float = 1.0
    """At most one progress report per this many seconds."""
    improved_delta: float = 1.0
    """At most one improved result per this many seconds."""
    checkpoint_delta: float = 30.0
    """Seconds between checkpoints of an actor with ``get_state`` (0: only on stop)."""
    workers: int = 0
    """Worker processes for ``map``/``imap`` (0: one per core)."""
    resources: Resources = msgspec.field(default_factory=Resources)
    """What the actor needs of its node, where a launcher places actors (Ray)."""
    inputs: tuple[str, ...] = ()
    """Input ports the class declares."""
    outputs: tuple[str, ...] = ()
    """Output ports the class declares."""
    taps: tuple[str, ...] = ()
    """Output ports (``actor.port``) it reads through taps, not links (the recorder that
    ``record start`` brings up on a live run): it stops after their producers."""
    line: int | None = None
    """Line of the actor's entry in its file, for messages."""
    host: str = ""
    """The host (a key of ``hosts:``) the actor runs on; empty: the nexus's host."""
    also: tuple[str, ...] = ()
    """Other hosts it may run on (``host: [a, b]``): a restart goes to the first one present
    when its host is lost. Its links then always run on Zenoh."""


class LinkSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One connection from an output port to an input port."""

    src: str
    """Producing actor."""
    src_port: str
    """Output port on the producing actor."""
    dst: str
    """Consuming actor."""
    dst_port: str
    """Input port on the consuming actor."""
    policy: Policy = Policy.BLOCK
    """Overflow policy."""
    capacity: int = 8
    """Messages the consumer's queue holds."""

    @property
    def name(self) -> str:
        """The link's display name, ``SRC.port->DST.port``."""
        return f"{self.src}.{self.src_port}->{self.dst}.{self.dst_port}"

    @property
    def output(self) -> str:
        """The producing port, ``SRC.port``."""
        return f"{self.src}.{self.src_port}"


class RecordSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a run records to MCAP (the ``record:`` section; see ``docs/recording.md``)."""

    path: str = "{name}-{time}.mcap"
    """The file to write; ``{name}``, ``{run}`` and ``{time}`` are filled in at start."""
    links: tuple[str, ...] | None = None
    """Output ports (``actor.port``) to record; None: every output of every actor."""
    chunk_size: int = 4 * 2**20
    """Bytes of messages per MCAP chunk (a crash loses at most the chunk being filled)."""
    compression: str = "none"
    """Chunk compression: ``none``, ``lz4`` or ``zstd``."""
    policy: Policy = Policy.BLOCK
    """``block``: the pipeline waits for a slow disk; ``drop_oldest``: never, and counts drops."""
    capacity: int = 16
    """Messages the recorder's queue holds per recorded output."""
    foxglove: tuple[str, ...] = ()
    """Outputs whose images are written as Foxglove RawImage."""
    start: bool = True
    """Record from the start; false: wait for ``invoke recorder record '["start"]'``."""


class PipelineSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A whole validated pipeline."""

    name: str
    """The pipeline's name."""
    actors: dict[str, ActorSpec]
    """Actors by name, in file order."""
    links: tuple[LinkSpec, ...] = ()
    """Connections, in file order."""
    settings: Settings = msgspec.field(default_factory=Settings)
    """Run-wide settings."""
    source: str = ""
    """Path of the file the spec came from, or empty."""
    record: RecordSpec | None = None
    """What the run records, or None."""
    hosts: dict[str, HostSpec] = msgspec.field(default_factory=dict)
    """The other machines actors may be placed on, by scope name."""
    tls: HostTls | None = None
    """The nexus's mutual TLS files for its sessions with the hosts' agents."""
    webhooks: tuple[WebhookSpec, ...] = ()
    """Where the run's events are POSTed (``docs/web.md``)."""
    jobs: tuple[JobSpec, ...] = ()
    """Worker jobs started with the run (``docs/jobs.md``)."""
    zenoh_links: bool = False
    """Every link on Zenoh (set at start when shared memory cannot be used)."""

    def host_of(self, actor: str) -> str:
        """The host scope ``actor`` runs on (empty: the nexus's host)."""
        return self.actors[actor].host

    def crosses_hosts(self, link: LinkSpec) -> bool:
        """True when ``link`` runs on Zenoh: its ends are on different hosts (or shared
        memory cannot be used)."""
        src, dst = self.actors[link.src], self.actors[link.dst]
        return self.zenoh_links or src.host != dst.host or bool(src.also or dst.also)

    def links_from(self, actor: str) -> list[LinkSpec]:
        """Links whose producer is ``actor``."""
        return [link for link in self.links if link.src == actor]

    def links_to(self, actor: str) -> list[LinkSpec]:
        """Links whose consumer is ``actor``."""
        return [link for link in self.links if link.dst == actor]

    def stop_order(self) -> list[list[str]]:
        """Actors grouped so that each group's producers are in earlier groups.

        Stopping group by group lets every queued message be handled before its consumer
        stops. Actors on a cycle end up together in the last group.
        """
        after = self._after()
        groups: list[list[str]] = []
        remaining = {name: len(after[name]) for name in self.actors}
        while remaining:
            layer = [name for name, deg in remaining.items() if deg == 0]
            if not layer:
                groups.append(list(remaining))
                break
            groups.append(layer)
            for name in layer:
                del remaining[name]
            for name in remaining:
                remaining[name] = len(after[name] & set(remaining))
        return groups

    def _after(self) -> dict[str, set[str]]:
        """Per actor, the other actors whose messages it reads (by links or taps)."""
        after: dict[str, set[str]] = {name: set() for name in self.actors}
        for link in self.links:
            if link.src != link.dst:
                after[link.dst].add(link.src)
        for name, actor in self.actors.items():
            after[name] |= {tap.partition(".")[0] for tap in actor.taps} - {name}
        return after
