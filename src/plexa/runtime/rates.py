"""One rate limiter for the reports an actor sends (progress, improved results).

At most one report per ``delta`` seconds goes out. A report offered sooner is held; a newer
one replaces it; the held one goes out as soon as it is due (at a safe point) or when the
actor stops. The clock is a parameter, so the rule is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Limiter"]

T = TypeVar("T")


class Limiter(Generic[T]):
    """Sends at most one item per ``delta`` seconds; holds the newest of those offered sooner."""

    def __init__(
        self,
        delta: float,
        send: Callable[[T], None],
        *,
        restamp: Callable[[T], T] = lambda item: item,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delta = delta
        self.send = send
        self.restamp = restamp
        """Applied to a held item when it finally goes out (a report says when it was sent)."""
        self.clock = clock
        self.held: T | None = None
        self.next_at = 0.0

    def offer(self, item: T) -> None:
        """Send ``item`` now if the last one went out ``delta`` ago, else hold it."""
        now = self.clock()
        if now >= self.next_at:
            self.next_at = now + self.delta
            self.held = None
            self.send(item)
        else:
            self.held = item

    @property
    def due(self) -> float:
        """When the held item may go (``inf`` if none is held)."""
        return self.next_at if self.held is not None else float("inf")

    def tick(self) -> None:
        """Send the held item if it is due."""
        if self.held is not None and self.clock() >= self.next_at:
            item, self.held = self.held, None
            self.next_at = self.clock() + self.delta
            self.send(self.restamp(item))

    def flush(self) -> None:
        """Send the held item now, whatever the time (the last report is never lost)."""
        if self.held is not None:
            item, self.held = self.held, None
            self.send(item)
