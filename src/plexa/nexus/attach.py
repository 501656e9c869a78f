"""How edges attach to a nexus: the control server, and later the HTTP server and recorder.

The nexus runs one loop. An :class:`Attachment` gives it sockets to poll (none while it is
busy with a request, so it is never re-entered), hears every event, adds fields to the run
record (its endpoints), and is ticked once per turn of the loop. Subclass it and override
what you need; every method has a harmless default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Attachment", "Listener"]


class Attachment:
    """Something that shares the nexus's loop. Every hook runs on the nexus's thread."""

    def sources(self) -> Sequence[Any]:
        """zmq sockets or file descriptors to poll now (return none while busy)."""
        return ()

    def on_readable(self, source: Any) -> None:
        """``source`` (one of :meth:`sources`) has something to read."""

    def on_event(self, kind: str, data: Any) -> None:
        """Something happened in the run (``state``, ``failure``, ``log``, ...)."""

    def record_fields(self) -> dict[str, Any]:
        """Fields to add to the run record (endpoints, keys)."""
        return {}

    def tick(self) -> None:
        """Once per turn of the nexus's loop (at least every 0.1 s while the nexus polls)."""

    def closing(self) -> None:
        """The run quits (called before its actors are stopped): end what you started."""


class Listener(Attachment):
    """An attachment that only hears events: ``nexus.attach(Listener(fn))``."""

    def __init__(self, fn: Callable[[str, Any], None]) -> None:
        self.fn = fn

    def on_event(self, kind: str, data: Any) -> None:
        """Pass the event to the function."""
        self.fn(kind, data)
