"""Playing recordings back into pipelines: the :class:`Player` source actor.

In a pipeline file::

    actors:
      camera: {class: "plexa.replay:Player",
               options: {file: imaging.mcap, channels: {frames: camera.frames}, speed: 1}}

Each output port plays one recorded channel (``{port: topic}``; a list of topics plays
each on the port named after the topic's port; no ``channels`` plays every channel). The
messages go out in recorded order, each after the recorded time since the first one,
divided by ``speed`` (``max``: no waiting). ``from`` / ``to`` (seconds from the start of
the recording) cut a window; ``loop`` starts over at the end. Arrays of an uncompressed
file are sent straight from the mapped file: one copy, into the link.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from plexa.core.actor import Actor
from plexa.core.spec import ActorSpec, PipelineSpec, Restart
from plexa.data.recording import Message, Pickled, Recording
from plexa.errors import ConfigError, ConfigIssue, RecordingError

__all__ = ["Player", "channels_of", "replay_spec"]


def channels_of(file: str, channels: dict[str, str] | list[str] | None) -> dict[str, str]:
    """``{output port: recorded topic}`` for a player of ``file`` given its ``channels``."""
    if isinstance(channels, dict):
        return {str(k): str(v) for k, v in channels.items()}
    if channels is None:
        with Recording(file) as rec:
            channels = rec.topics
    found: dict[str, str] = {}
    for topic in channels:
        port = topic.rpartition(".")[2]
        if port in found:
            raise RecordingError(
                f"channels {found[port]!r} and {topic!r} would both play on port {port!r}: "
                "give channels as {port: topic}"
            )
        found[port] = topic
    return found


class Player(Actor):
    """A source that plays recorded channels out of its output ports (see the module doc)."""

    @classmethod
    def outputs_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """One output port per played channel."""
        return tuple(channels_of(str(options["file"]), options.get("channels")))

    def setup(
        self,
        file: str = "recording.mcap",
        channels: dict[str, str] | list[str] | None = None,
        speed: float | str = 1.0,
        loop: bool = False,
        allow_pickle: bool = False,
        **window: float,
    ) -> None:
        unknown = set(window) - {"from", "to"}
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)} (the window is 'from' / 'to')")
        self.recording = Recording(file, unpickle=allow_pickle)
        self.ports = channels_of(file, channels)
        self.topics = {topic: port for port, topic in self.ports.items()}
        if speed == "max" or speed == 0:
            self.speed = 0.0
        else:
            self.speed = float(speed)
            if self.speed < 0:
                raise ValueError(f"speed must be > 0 or 'max', not {speed!r}")
        self.loop = loop
        self.start_ns = self._origin()
        self.begin = (
            None if window.get("from") is None else self.start_ns + int(float(window["from"]) * 1e9)
        )
        self.end = (
            None if window.get("to") is None else self.start_ns + int(float(window["to"]) * 1e9)
        )
        self.total = sum(1 for _ in self._messages())
        self.played = 0
        self.rounds = 0
        self._it: Iterator[Message] | None = None
        self._next: Message | None = None
        self._t0 = 0.0
        self._first = 0

    def _origin(self) -> int:
        """The first send time in the recording (the zero of ``from`` / ``to``)."""
        for msg in self.recording.messages():
            return msg.time
        return 0

    def _messages(self) -> Iterator[Message]:
        return self.recording.messages(list(self.topics), self.begin, self.end)

    def run_step(self) -> None:
        """Send the next message when it is due (waits at most 50 ms per step)."""
        if self._next is None:
            if self._it is None:
                if self.rounds and not self.loop:
                    time.sleep(0.05)
                    return
                self._it = self._messages()
                self._t0 = time.monotonic()
                self._first = -1
                self.rounds += 1
            self._next = next(self._it, None)
            if self._next is None:
                self._it = None
                self.progress(self.played, self.total * self.rounds, "played")
                if not self.loop:
                    self.log.info("played %d messages", self.played)
                return
            if self._first < 0:
                self._first = self._next.time
        msg = self._next
        if self.speed:
            delay = self._t0 + (msg.time - self._first) / 1e9 / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.05))
                if delay > 0.05:
                    return
        if isinstance(msg.obj, Pickled):
            raise RecordingError(
                f"channel {msg.channel} holds pickles: give the player allow_pickle: true "
                "if you trust the file (loading a pickle runs code)"
            )
        self.outputs[self.topics[msg.channel]].put(msg.obj)
        self._next = None
        self.played += 1
        self.progress(self.played, self.total * (self.rounds if self.loop else 1), "playing")

    def stop(self) -> None:
        """Release the file."""
        self._it = None
        self._next = None
        self.recording.close()


_TARGET = f"{Player.__module__}:{Player.__qualname__}"


def replay_spec(
    spec: PipelineSpec,
    file: str,
    *,
    speed: float | str = 1.0,
    loop: bool = False,
    start: float | None = None,
    end: float | None = None,
    allow_pickle: bool = False,
) -> PipelineSpec:
    """``spec`` with every source whose outputs were recorded in ``file`` replaced by a
    :class:`Player` of those outputs (same name, same ports)."""
    with Recording(file) as rec:
        topics = set(rec.topics)
    actors = dict(spec.actors)
    replaced = []
    for name, actor in spec.actors.items():
        played = {p: f"{name}.{p}" for p in actor.outputs if f"{name}.{p}" in topics}
        if actor.inputs or not played:
            continue
        window = {k: v for k, v in (("from", start), ("to", end)) if v is not None}
        actors[name] = ActorSpec(
            name=name,
            target=_TARGET,
            options={
                "file": str(file),
                "channels": played,
                "speed": speed,
                "loop": loop,
                "allow_pickle": allow_pickle,
                **window,
            },
            outputs=actor.outputs,
            restart=Restart.NEVER,
            line=actor.line,
        )
        replaced.append(name)
    if not replaced:
        raise ConfigError(
            [
                ConfigIssue(
                    spec.source or spec.name,
                    None,
                    "(replay)",
                    f"no source of this pipeline was recorded in {file}",
                    f"recorded: {', '.join(sorted(topics)) or 'nothing'}",
                )
            ]
        )
    return spec.__class__(
        name=spec.name,
        actors=actors,
        links=spec.links,
        settings=spec.settings,
        source=spec.source,
        record=spec.record,
    )
