"""plexa: live pipelines of actors with zero-copy links, steered while they run.

Write actors (:class:`Actor`, :class:`AsyncActor`), connect them in a YAML file, and run it
with ``plexa run FILE``, or from Python with :func:`drive` (start to report in one call)
or step by step with :class:`Nexus`.

Names are imported on first use (module ``__getattr__``), so ``import plexa`` and the
command line's control path stay fast: ``plexa ctl NAME status`` never loads numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from plexa.nexus.driver import RunOutcome, drive
    from plexa.nexus.nexus import ActorFailure, Nexus, QuitReport

__version__ = "0.1.0"

_WHERE = {
    "plexa.core.actor": ("Actor", "AsyncActor", "command", "on", "ports"),
    "plexa.core.config": ("load", "loads", "validate"),
    "plexa.core.lifecycle": ("ActorState", "FailureKind", "Phase", "Signal"),
    "plexa.core.spec": ("ActorSpec", "LinkSpec", "PipelineSpec", "Policy", "Restart", "Settings"),
    "plexa.edges.client": ("Client", "connect"),
    "plexa.errors": (
        "Aborted",
        "ActorFailed",
        "ConfigError",
        "InvalidTransition",
        "KeyNotFound",
        "LinkBroken",
        "LinkClosed",
        "PayloadError",
        "PlexaError",
        "RemoteError",
        "StoreFull",
        "Timeout",
        "WouldBlock",
    ),
    "plexa.nexus.driver": ("RunOutcome", "drive"),
    "plexa.nexus.nexus": ("ActorFailure", "Nexus", "QuitReport"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

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
    "RunOutcome",
    "Settings",
    "Signal",
    "StoreFull",
    "Timeout",
    "WouldBlock",
    "__version__",
    "command",
    "connect",
    "drive",
    "load",
    "loads",
    "on",
    "ports",
    "validate",
]


def __getattr__(name: str) -> Any:
    """Import a public name the first time it is used."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'plexa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) - {"importlib", "TYPE_CHECKING", "Any"} | set(_MODULE_OF))
