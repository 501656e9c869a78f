"""The run's status object (``plexa run --json``, ``plexa ctl NAME status``), from counters.

Everything here is read from the shared counters and the nexus's own records: no actor is
asked, so a status request costs microseconds whatever the pipeline is doing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from plexa.core.documents import ActorFacts, ActorStatus, LinkStatus, RunFacts, RunStatus, Status
from plexa.core.spec import PipelineSpec
from plexa.data.counters import (
    HIST_BASE,
    HIST_BUCKETS,
    ActorField,
    Counters,
    LinkField,
    OutputField,
    percentile,
)

__all__ = ["ProcessUsage", "StatusBuilder", "empty_status", "status_document"]

WINDOW_S = 0.5
"""Rates and percentiles are taken over the last window at least this long."""


class ProcessUsage:
    """CPU % (over the last window) and resident memory of processes, read from /proc."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._seen: dict[int, tuple[float, float, float | None]] = {}

    def sample(self, pid: int | None, now: float) -> tuple[float | None, int | None]:
        """``(cpu_percent, rss_bytes)`` of ``pid``; None where unknown (no such process, or
        no window yet for the CPU %)."""
        if not pid:
            return None, None
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            statm = Path(f"/proc/{pid}/statm").read_bytes()
        except OSError:
            self._seen.pop(pid, None)
            return None, None
        fields = stat[stat.rindex(b")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._tick
        rss = int(statm.split()[1]) * self._page
        t0, cpu0, percent = self._seen.get(pid, (now, cpu, None))
        if now - t0 >= WINDOW_S:
            percent = round(100.0 * (cpu - cpu0) / (now - t0), 1)
            t0, cpu0 = now, cpu
        self._seen[pid] = (t0, cpu0, percent)
        return percent, rss


class StatusBuilder:
    """Turns counter snapshots into status objects, keeping a sliding window for rates."""

    def __init__(
        self,
        spec: PipelineSpec,
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.counters = counters
        self.clock = clock
        self.remote_usage: Callable[[str], tuple[float | None, int | None] | None] | None = None
        """CPU % and resident bytes of an actor on another host (the launcher's reports;
        None: the actor runs on this machine after all, its pid is measured here)."""
        """Where rates get their time from (a test passes one it moves by hand)."""
        self._usage = ProcessUsage()
        self._prev: tuple[float, npt.NDArray[np.int64]] | None = None
        self._window: tuple[float, npt.NDArray[np.int64]] | None = None
        # An actor's messages in and out are its links' and output ports' counts: rows of
        # the links into it and of its linked output ports.
        self._ins = {
            name: [counters.link_index(link.name) for link in spec.links_to(name)]
            for name in spec.actors
        }
        self._outs = {
            name: sorted({counters.output_index(link.output) for link in spec.links_from(name)})
            for name in spec.actors
        }

    def grown(self, spec: PipelineSpec, counters: Counters) -> StatusBuilder:
        """A builder for ``spec`` (an actor was added to the live run) and its grown
        ``counters``; rates start their window again."""
        builder = StatusBuilder(spec, counters, self.clock)
        builder.remote_usage = self.remote_usage
        return builder

    def _advance(self, now: float, snap: npt.NDArray[np.int64]) -> None:
        if self._prev is None:
            self._prev = (now, snap)
            return
        t0, old = self._prev
        if now - t0 >= WINDOW_S:
            self._window = (now - t0, snap - old)
            self._prev = (now, snap)

    def build(
        self, run: RunFacts, actors: Mapping[str, ActorFacts], drained: bool, uptime: float
    ) -> Status:
        """The status object; ``actors`` holds what only the nexus knows (state, pid...)."""
        counters = self.counters
        snap = counters.snapshot()
        now = self.clock()
        self._advance(now, snap)
        dt, delta = self._window if self._window is not None else (0.0, None)
        out_actors: dict[str, ActorStatus] = {}
        for name, facts in actors.items():
            i = counters.actor_index(name)
            row = snap[i]
            calls = int(row[ActorField.HANDLER_CALLS])
            hist = (delta[i] if delta is not None and delta[i][HIST_BASE:].sum() else row)[
                HIST_BASE : HIST_BASE + HIST_BUCKETS
            ]
            ins, outs = self._ins[name], self._outs[name]
            usage: tuple[float | None, int | None] | None = None
            if facts.host:  # another host's pid means nothing here: ask that host
                usage = self.remote_usage(name) if self.remote_usage else (None, None)
            cpu, rss = usage if usage is not None else self._usage.sample(facts.pid, now)
            msgs_in = int(snap[ins, LinkField.RECEIVED].sum())
            msgs_out = int(snap[outs, OutputField.SENT].sum())
            if drained and uptime > 0:  # after a stop, the run's mean is the rate
                rate_in, rate_out = round(msgs_in / uptime, 1), round(msgs_out / uptime, 1)
            else:
                rate_in = _rate(delta, dt, ins, LinkField.RECEIVED)
                rate_out = _rate(delta, dt, outs, OutputField.SENT)
            out_actors[name] = ActorStatus(
                **_fields(facts),
                msgs_in=msgs_in,
                msgs_out=msgs_out,
                rate_in=rate_in,
                rate_out=rate_out,
                handler_mean_us=round(int(row[ActorField.HANDLER_NS]) / calls / 1e3, 1)
                if calls
                else None,
                handler_p50_us=percentile(hist, 0.5),
                handler_p99_us=percentile(hist, 0.99),
                cpu_percent=cpu,
                rss_bytes=rss,
            )
        links: dict[str, LinkStatus] = {}
        for link in self.spec.links:
            li = counters.link_index(link.name)
            oi = counters.output_index(link.output)
            lrow = snap[li]
            sent = int(snap[oi][OutputField.SENT])
            received = int(lrow[LinkField.RECEIVED])
            dropped = int(lrow[LinkField.DROPPED])
            lost = int(lrow[LinkField.LOST])
            in_flight = sent - received - dropped - lost
            hist = (delta[li] if delta is not None and delta[li][HIST_BASE:].sum() else lrow)[
                HIST_BASE : HIST_BASE + HIST_BUCKETS
            ]
            links[link.name] = LinkStatus(
                policy=link.policy.value,
                capacity=link.capacity,
                sent=sent,
                received=received,
                dropped=dropped,
                lost=lost + (in_flight if drained else 0),
                in_flight=0 if drained else in_flight,
                depth=max(0, sent - int(lrow[LinkField.CONSUMED])),
                rate=_rate(delta, dt, li, LinkField.RECEIVED),
                bytes_per_s=_rate(delta, dt, oi, OutputField.BYTES),
                latency_p50_us=percentile(hist, 0.5),
                latency_p99_us=percentile(hist, 0.99),
                latency_buckets=lrow[HIST_BASE : HIST_BASE + HIST_BUCKETS].tolist(),
                latency_sum_s=int(lrow[LinkField.LATENCY_SUM_NS]) / 1e9,
                transport="zenoh" if self.spec.crosses_hosts(link) else "iceoryx2",
            )
        return Status(
            run=RunStatus(**_fields(run), uptime_s=round(uptime, 3)),
            actors=out_actors,
            links=links,
        )


def empty_status(run: RunFacts, actors: Mapping[str, ActorFacts]) -> Status:
    """The status before the run has counters (before ``start``): nothing counted yet."""
    return Status(
        run=RunStatus(**_fields(run), uptime_s=0.0),
        actors={
            name: ActorStatus(**_fields(facts), msgs_in=0, msgs_out=0, rate_in=0.0, rate_out=0.0)
            for name, facts in actors.items()
        },
        links={},
    )


def _fields(record: msgspec.Struct) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__struct_fields__}


def _rate(delta: npt.NDArray[np.int64] | None, dt: float, rows: int | list[int], col: int) -> float:
    if delta is None or dt <= 0:
        return 0.0
    return round(float(delta[rows, col].sum()) / dt, 1)


def status_document(
    builder: StatusBuilder | None,
    final: dict[str, Any] | None,
    run: dict[str, Any],
    actors: dict[str, dict[str, Any]],
    drained: bool,
    uptime: float,
) -> dict[str, Any]:
    """The status document (JSON shape): built from the counters while the run has them,
    the last one built (with the current run facts) after, an empty one before start."""
    if builder is None and final is not None:
        return {**final, "run": {**final["run"], **run}}
    if builder is None:
        empty = {
            n: {**a, "msgs_in": 0, "msgs_out": 0, "rate_in": 0.0, "rate_out": 0.0}
            for n, a in actors.items()
        }
        return {"run": {**run, "uptime_s": 0.0}, "actors": empty, "links": {}}
    facts = {n: msgspec.convert(a, ActorFacts) for n, a in actors.items()}
    built = builder.build(msgspec.convert(run, RunFacts), facts, drained, uptime)
    return msgspec.to_builtins(built)  # type: ignore[no-any-return]
