"""Small actor classes for the config tests (imported as ``actors_for_config:Name``)."""

from __future__ import annotations

from typing import Any

from plexa.core.actor import Actor, on, ports


class Source(Actor):
    """Emits frames; every option has a default."""

    outputs = ports("frames")

    def setup(self, rate_hz: float = 10.0, shape: tuple[int, ...] = (4, 4)) -> None:
        self.rate_hz = rate_hz
        self.shape = shape

    def run_step(self) -> None:
        pass


class Sink(Actor):
    """Takes frames through a handler."""

    @on("frames")
    def frames(self, x: Any) -> None:
        pass


class Relay(Actor):
    """Takes frames and passes them on, so it can sit on a cycle."""

    outputs = ports("frames", "stats")

    @on("frames")
    def got(self, x: Any) -> None:
        pass

    @on("control")
    def steer(self, x: Any) -> None:
        pass


class Needy(Actor):
    """Cannot be set up without ``path``."""

    def setup(self, path: str, verbose: bool = False) -> None:  # type: ignore[override]
        self.path = path


class Open(Actor):
    """Takes any option."""

    def setup(self, **options: Any) -> None:
        self.options = options


class NotAnActor:
    """A class that does not derive from Actor."""


def helper() -> None:
    """A function, not a class."""
