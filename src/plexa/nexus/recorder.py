"""Recording a run: the built-in recorder actor and how the nexus adds it to a pipeline.

The recorder is an ordinary actor that the nexus adds to the spec (named ``recorder``), with
one input per recorded output port and one link from each: it runs in its own process,
reads the links like any consumer (zero-copy), and gets launch, supervision, counters,
the stop order (it stops last, after draining) and cleanup from the machinery every actor
has. Its links carry the ``record:`` policy: ``block`` holds a producer while the disk is
slower, ``drop_oldest`` never does and the link counts what it dropped.

A write that fails (a full disk) closes the file at its last complete chunk, logs an error
and leaves the run alone: the recorder goes on taking messages and counts them as not
written, so not even a ``block`` link stalls.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from plexa.core.actor import Actor, command
from plexa.core.spec import ActorSpec, LinkSpec, PipelineSpec, RecordSpec, Restart
from plexa.data.inputs import EMPTY
from plexa.data.recording import RecordingWriter
from plexa.errors import RecordingError

__all__ = ["Recorder", "record_path", "recorded_outputs", "with_recorder"]

BATCH = 64
"""Messages taken from one input before the next input gets its turn."""


def recorded_outputs(spec: PipelineSpec, record: RecordSpec) -> list[str]:
    """The output ports (``actor.port``) that ``record`` names, or every one of the spec."""
    if record.links is not None:
        return list(dict.fromkeys(record.links))
    return [f"{name}.{port}" for name, actor in spec.actors.items() for port in actor.outputs]


def record_path(template: str, name: str, run_id: str, when: float | None = None) -> Path:
    """``template`` with ``{name}``, ``{run}`` and ``{time}`` (local, ``YYYYmmdd-HHMMSS``)
    filled in, made absolute."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return Path(template.format(name=name, run=run_id, time=stamp)).expanduser().absolute()


def with_recorder(spec: PipelineSpec, run_id: str) -> PipelineSpec:
    """``spec`` with the recorder actor and its links added, if it records anything."""
    record = spec.record
    if record is None or any(a.target == _TARGET for a in spec.actors.values()):
        return spec
    outputs = recorded_outputs(spec, record)
    name = "recorder"
    while name in spec.actors:
        name = "_" + name
    links = []
    for output in outputs:
        src, _, port = output.partition(".")
        links.append(
            LinkSpec(
                src=src,
                src_port=port,
                dst=name,
                dst_port=output,
                policy=record.policy,
                capacity=record.capacity,
            )
        )
    path = record_path(record.path, spec.name, run_id)
    options: dict[str, Any] = {
        "path": str(path),
        "chunk_size": record.chunk_size,
        "compression": record.compression,
        "foxglove": list(record.foxglove),
        "metadata": {"pipeline": spec.name, "run": run_id, "source": spec.source},
        "start": record.start,
    }
    actor = ActorSpec(
        name=name,
        target=_TARGET,
        options=options,
        inputs=tuple(outputs),
        restart=Restart.ON_FAILURE,
    )
    return spec.__class__(
        name=spec.name,
        actors={**spec.actors, name: actor},
        links=(*spec.links, *links),
        settings=spec.settings,
        source=spec.source,
        record=record,
    )


def _free(path: Path) -> Path:
    """``path``, or ``stem-1.mcap``, ``stem-2.mcap``, ... : a recording is never overwritten
    (a restarted recorder starts a new file next to the one its predecessor left)."""
    found, n = path, 0
    while found.exists():
        n += 1
        found = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return found


class Recorder(Actor):
    """Writes every message of its inputs to an MCAP file (see :mod:`plexa.data.recording`).

    Each input is named after the output port it records, which is also its channel's topic.
    Its progress reports carry its counters as fields (``actors.recorder.progress.fields`` in
    the status document): ``written``, ``bytes``, ``mb_per_s``, ``not_written``, ``dropped``,
    ``path`` and ``error``.
    """

    def setup(
        self,
        path: str = "recording.mcap",
        chunk_size: int = 4 * 2**20,
        compression: str = "none",
        foxglove: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        start: bool = True,
    ) -> None:
        self.template = path
        self.settings: dict[str, Any] = {
            "chunk_size": chunk_size,
            "compression": compression,
            "foxglove": foxglove or (),
            "metadata": metadata,
        }
        self.clock = time.time_ns() - time.monotonic_ns()
        """Add to a send time (``monotonic_ns``) to get ns since the Unix epoch."""
        self.writer: RecordingWriter | None = None
        self.only: set[str] | None = None
        """The outputs written (after ``record start LINKS``), or None: all of them."""
        self.path = ""
        self.written = 0
        self.bytes = 0
        self.not_written = 0
        self.error = ""
        self.started = time.monotonic()
        self._next_report = 0.0
        if start:
            self._open(path)
        # SIGTERM (the nexus died, or the stop ladder) ends the process without stop():
        # finish the file on the way out, so it opens fast everywhere.
        atexit.register(self._close)

    def _open(self, path: str) -> None:
        target = _free(Path(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        self.writer = RecordingWriter(target, **self.settings)
        self.path = str(target)
        self.error = ""
        self.log.info("recording %d outputs to %s", len(self.inputs), self.path)

    @command
    def record(
        self, action: str, path: str | None = None, links: list[str] | None = None
    ) -> dict[str, Any]:
        """``plexa ctl NAME record stop``: finish the file and go on taking messages without
        writing them; ``record start [LINKS]``: write to a new file (``path``, or the
        configured one), only ``LINKS`` if given (of the outputs recorded since the start).
        Returns the counters."""
        if action == "stop":
            if self.writer is not None:
                self._close()
                self.error = "on request"
        elif action == "start":
            if self.writer is not None:
                raise RecordingError(f"already recording to {self.path}")
            unknown = sorted(set(links or ()) - set(self.inputs))
            if unknown:
                raise RecordingError(
                    f"not recordable: {', '.join(unknown)} (this run records "
                    f"{', '.join(self.inputs)}; which outputs is fixed when the run starts)"
                )
            self.only = set(links) if links else None
            self._open(path or self.template)
        else:
            raise ValueError(f"record takes 'start' or 'stop', not {action!r}")
        self.report()
        return self.statistics()

    def run_step(self) -> None:
        """Take what is queued on every input (a batch each, in turn) and write it."""
        took = 0
        port = None
        for topic in self.inputs:
            port = self.inputs[topic]
            for _ in range(BATCH):
                got = port.take_stamped()
                if got is EMPTY:
                    break
                took += 1
                self._write(topic, *got)
                del got  # the message's sample goes back to its link now
        if took:
            now = time.monotonic()
            if now >= self._next_report:  # (formatting the counters per message costs)
                self._next_report = now + 0.2
                self.report()
        elif port is not None:
            port.wait(0.05)
        else:
            time.sleep(0.05)

    def _write(self, topic: str, obj: object, seq: int, t_ns: int) -> None:
        writer = self.writer
        if writer is None or (self.only is not None and topic not in self.only):
            self.not_written += 1
            return
        try:
            self.bytes += writer.write(topic, obj, sequence=seq, publish_ns=t_ns + self.clock)
        except RecordingError as exc:
            self.not_written += 1
            self.error = str(exc)
            self.writer = None
            writer.close()
            self.log.error(
                "%s; the run goes on without recording (%d messages written to %s)",
                exc,
                self.written,
                self.path,
            )
            self.report()
            return
        self.written += 1

    def statistics(self) -> dict[str, Any]:
        """The recorder's counters: written, bytes, MB/s, not written, dropped (by its
        ``drop_oldest`` links before it could take them), path, error."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        dropped = 0
        for topic in self.inputs:
            with contextlib.suppress(Exception):  # a port without counters (testing)
                dropped += sum(s.dropped for s in self.inputs[topic].statistics().values())
        return {
            "written": self.written,
            "bytes": self.bytes,
            "mb_per_s": round(self.bytes / elapsed / 1e6, 3),
            "not_written": self.not_written,
            "dropped": dropped,
            "path": self.path,
            "error": self.error,
        }

    def report(self) -> None:
        """Publish the counters as this actor's progress (at most once per progress_delta)."""
        stats = self.statistics()
        state = f"STOPPED: {self.error}" if self.error else "recording"
        if not self.path:
            state = "not recording (start it with: invoke recorder record '[\"start\"]')"
        self.progress(
            self.written,
            None,
            f"{state}: {stats['written']} messages, {stats['bytes'] / 1e6:.1f} MB, "
            f"{stats['mb_per_s']:.1f} MB/s, {stats['not_written']} not written, "
            f"{stats['dropped']} dropped -> {self.path}",
            **{k: v for k, v in stats.items() if v is not None},
        )

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            self.log.info(
                "recorded %d messages (%.1f MB) to %s", self.written, size / 1e6, self.path
            )

    def stop(self) -> None:
        """Finish the file (summary and footer), so that it opens fast everywhere."""
        self._close()
        self.report()


_TARGET = f"{Recorder.__module__}:{Recorder.__qualname__}"
