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

Outputs that are not linked to the recorder (a run started without ``record:``, or an
output the section left out) are read through taps (:class:`plexa.data.tap.RecordingTap`)
from ``record start``: ``drop_oldest``, never slowing the pipeline, their misses counted as
``dropped``. :mod:`plexa.nexus.live` brings a recorder up on a live run that has none.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from plexa.core.actor import Actor, command
from plexa.core.spec import ActorSpec, LinkSpec, PipelineSpec, RecordSpec, Restart
from plexa.data.inputs import EMPTY
from plexa.data.recording import RecordingWriter
from plexa.data.tap import RecordingTap, TapWake, tappable
from plexa.errors import RecordingError
from plexa.runtime.boot import at_exit

__all__ = ["Recorder", "record_path", "recorded_outputs", "with_recorder"]

BATCH = 64
"""Messages taken from one input before the next input gets its turn."""
TAP_POLL_S = 0.002
"""How long a recorder that also has linked inputs idles between looks at its taps (it
waits on its inputs' wake-up; a queue of 8 frames at 1 kHz has room for four such naps).
One with taps only waits on the run's tap wake-up, which the tapped producers notify."""


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
        "capacity": record.capacity,
    }
    actor = ActorSpec(
        name=name,
        target=_TARGET,
        options=options,
        inputs=tuple(outputs),
        restart=Restart.ON_FAILURE,
    )
    return msgspec.structs.replace(
        spec, actors={**spec.actors, name: actor}, links=(*spec.links, *links)
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
        links: list[str] | None = None,
        capacity: int = 16,
    ) -> None:
        """``links``: the outputs to record from the start (default: every input);
        ``capacity``: the queue of each tap."""
        self.template = path
        self.capacity = capacity
        self.taps: dict[str, RecordingTap] = {}
        """Outputs read through taps (not linked to the recorder), by topic."""
        self.tap_dropped = 0
        """Messages missed by taps closed since."""
        self._tap_wake: TapWake | None = None
        """The run's tap wake-up listener, once a tap is open."""
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
            try:
                self._start(path, links)
            except (RecordingError, OSError) as exc:  # a file or tap it cannot open:
                self.error = str(exc)  # never the run (nor a restart loop)
                self.log.error("%s; the run goes on without recording", exc)
        # SIGTERM (the nexus died, or the stop ladder) ends the process without stop():
        # finish the file on the way out, so it opens fast everywhere.
        at_exit(self._close)

    def _plexa_attached(self, runtime: Any) -> None:
        self._runtime = runtime  # its domain and spec: what taps are opened with

    def _start(self, path: str, links: list[str] | None) -> None:
        """Open taps for ``links`` that are not inputs (every tappable output when there are
        neither links nor inputs), then a new file."""
        runtime = getattr(self, "_runtime", None)
        wanted = list(dict.fromkeys(links or ()))
        if not wanted and not self.inputs and runtime is not None:
            wanted = tappable(runtime.spec)
            if not wanted:
                raise RecordingError("nothing to record: no output of this run can be tapped")
        tapped = [x for x in wanted if x not in self.inputs and x not in self.taps]
        opened: dict[str, RecordingTap] = {}
        try:
            for output in tapped:
                if runtime is None:  # (an actor harness has no run to tap)
                    raise RecordingError(f"not recordable here: {output}")
                opened[output] = RecordingTap(
                    runtime.domain, runtime.spec, output, self.capacity, runtime.counters
                )
            if opened and runtime is not None and self._tap_wake is None:
                self._tap_wake = TapWake(runtime.domain)
        except RecordingError:
            for tap in opened.values():
                tap.close()
            raise
        self.taps.update(opened)
        self.only = set(wanted) if wanted else None
        self._open(path)

    def _open(self, path: str) -> None:
        target = _free(Path(path))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.writer = RecordingWriter(target, **self.settings)
        except OSError as exc:
            raise RecordingError(f"cannot record to {target}: {exc.strerror or exc}") from None
        self.path = str(target)
        self.error = ""
        count = len(self.only) if self.only is not None else len(self.inputs)
        self.log.info("recording %d outputs to %s", count, self.path)

    def _close_taps(self) -> None:
        for tap in self.taps.values():
            self.tap_dropped += tap.dropped
            tap.close()
        self.taps.clear()
        if self._tap_wake is not None:
            self._tap_wake.close()
            self._tap_wake = None

    @command
    def record(
        self, action: str, path: str | None = None, links: list[str] | None = None
    ) -> dict[str, Any]:
        """``plexa ctl NAME record stop``: finish the file, close the taps and go on taking
        linked messages without writing them; ``record start [LINKS]``: write to a new file
        (``path``, or the configured one), only ``LINKS`` if given: outputs linked to the
        recorder, or any other output of the run, read through a tap. Returns the counters."""
        if action == "stop":
            if self.writer is not None:
                self._close()
                self.error = "on request"
            self._close_taps()
        elif action == "start":
            if self.writer is not None:
                raise RecordingError(f"already recording to {self.path}")
            self._start(path or self.template, links)
        else:
            raise ValueError(f"record takes 'start' or 'stop', not {action!r}")
        self.report()
        return self.statistics()

    def run_step(self) -> None:
        """Take what is queued on every tap and input (a batch each, in turn) and write it."""
        taps = [(topic, tap.take_stamped) for topic, tap in self.taps.items()]
        ports = [(topic, self.inputs[topic].take_stamped) for topic in self.inputs]
        took = self._take(taps, None) + self._take(ports, EMPTY)
        if took:
            now = time.monotonic()
            if now >= self._next_report:  # (formatting the counters per message costs)
                self._next_report = now + 0.2
                self.report()
            return
        if ports:
            self.inputs[ports[-1][0]].wait(TAP_POLL_S if taps else 0.05)
        elif self._tap_wake is not None:
            self._tap_wake.wait(0.05)
        else:
            time.sleep(0.05)

    def _take_taps(self) -> int:
        """Take and write up to a batch of messages from each tap; returns how many."""
        return self._take([(topic, tap.take_stamped) for topic, tap in self.taps.items()], None)

    def _take(self, sources: list[tuple[str, Callable[[], Any]]], empty: object) -> int:
        """Take and write up to :data:`BATCH` messages ``(obj, seq, t_ns)`` from each source
        (``take`` returns ``empty`` when it has none); returns how many."""
        took = 0
        for topic, take in sources:
            for _ in range(BATCH):
                got = take()
                if got is empty:
                    break
                took += 1
                self._write(topic, *got)
                del got  # the message's sample goes back to its link now
        return took

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
        ``drop_oldest`` links and its taps before it could take them), path, error."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        dropped = self.tap_dropped + sum(tap.dropped for tap in self.taps.values())
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
            state = "not recording (start it with: plexa ctl NAME record start)"
            state = f"STOPPED: {self.error}" if self.error else state
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
        """Write what the taps still hold (their producers have stopped: it stops last),
        finish the file (summary and footer), so that it opens fast everywhere."""
        deadline = time.monotonic() + 1.0
        while self.taps and self._take_taps() and time.monotonic() < deadline:
            pass
        self._close()
        self._close_taps()
        self.report()


_TARGET = f"{Recorder.__module__}:{Recorder.__qualname__}"
