"""What ``plexa run`` prints the moment it happens: failures (with the traceback, once) and
restarts, one line each, from the nexus's events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from plexa.core.spec import PipelineSpec

__all__ = ["EventLines"]


class EventLines:
    """Turns nexus events into lines for a person, and hands them to ``write``.

    ``12:00:01 traces failed (exception in run): ValueError: boom`` then its traceback,
    ``12:00:01 traces restart 1/3 in 0.1 s``, ``12:00:02 traces restarted``,
    ``12:00:05 traces failed for good (3 restarts)``.
    """

    def __init__(self, spec: PipelineSpec, write: Callable[[str], None]) -> None:
        self.spec = spec
        self.write = write
        self.restarts: dict[str, int] = {}
        self.printed: set[tuple[str, str]] = set()
        """(actor, error) of failures whose traceback was printed (each is printed once)."""

    def __call__(self, kind: str, data: Any) -> None:
        """Handle one event (a nexus listener)."""
        if not isinstance(data, dict) or "actor" not in data:
            return
        actor = str(data["actor"])
        stamp = time.strftime("%H:%M:%S")
        if kind == "failure":
            self.write(
                f"{stamp} {actor} failed ({data.get('kind')} in {data.get('phase')}): "
                f"{data.get('error')}"
            )
            key = (actor, str(data.get("error")))
            if data.get("traceback") and key not in self.printed:
                self.printed.add(key)
                self.write(str(data["traceback"]).rstrip())
        elif kind == "state" and data.get("state") == "restarting":
            n = self.restarts[actor] = self.restarts.get(actor, 0) + 1
            spec = self.spec.actors.get(actor)
            most = f"/{spec.max_restarts}" if spec is not None else ""
            self.write(f"{stamp} {actor} restart {n}{most} in {float(data.get('in_s', 0)):.1f} s")
        elif kind == "restarted":
            self.write(f"{stamp} {actor} restarted")
        elif kind == "state" and data.get("state") == "failed":
            n = self.restarts.get(actor, 0)
            after = f" ({n} restart{'s' if n != 1 else ''})" if n else ""
            self.write(f"{stamp} {actor} failed for good{after}")

    def printed_traceback(self, actor: str, error: str) -> bool:
        """True when the traceback of this failure was printed already."""
        return (actor, error) in self.printed
