"""plexa: live pipelines of actors with zero-copy links, steered while they run.

Write actors (:class:`Actor`, :class:`AsyncActor`), connect them in a YAML file, and run it
with ``plexa run FILE`` or from Python with :class:`Nexus`.
"""

from __future__ import annotations

from plexa.core.actor import Actor, AsyncActor, command, on, ports
from plexa.core.config import load, loads, validate
from plexa.core.lifecycle import ActorState, FailureKind, Phase, Signal
from plexa.core.spec import ActorSpec, LinkSpec, PipelineSpec, Policy, Restart, Settings
from plexa.edges.client import Client, connect
from plexa.errors import (
    Aborted,
    ActorFailed,
    ConfigError,
    InvalidTransition,
    KeyNotFound,
    LinkBroken,
    LinkClosed,
    PayloadError,
    PlexaError,
    RemoteError,
    StoreFull,
    Timeout,
    WouldBlock,
)
from plexa.nexus.nexus import ActorFailure, Nexus, QuitReport

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "Actor",
    "ActorFailed",
    "ActorFailure",
    "ActorSpec",
    "ActorState",
    "AsyncActor",
    "Client",
    "ConfigError",
    "FailureKind",
    "InvalidTransition",
    "KeyNotFound",
    "LinkBroken",
    "LinkClosed",
    "LinkSpec",
    "Nexus",
    "PayloadError",
    "Phase",
    "PipelineSpec",
    "PlexaError",
    "Policy",
    "QuitReport",
    "RemoteError",
    "Restart",
    "Settings",
    "Signal",
    "StoreFull",
    "Timeout",
    "WouldBlock",
    "__version__",
    "command",
    "connect",
    "load",
    "loads",
    "on",
    "ports",
    "validate",
]
