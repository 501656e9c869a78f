"""Actors the link benchmark (:mod:`benchmarks.links`) runs in plexa pipelines.

They do exactly what the raw iceoryx2 processes of :mod:`benchmarks._raw` do, with the same
helpers (:func:`~benchmarks._raw.stamp`, :func:`~benchmarks._raw.consume`), so the two sides
differ only in the transport.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
from benchmarks._raw import consume, read_stamp, stamp

import plexa

__all__ = ["Consumer", "Producer", "Relay", "Sink", "Ticker"]


class Producer(plexa.Actor):
    """Writes one frame per step into ``out``: a copy of a source frame plus a stamp.

    ``mode="loan"`` fills a loaned shared-memory buffer; ``mode="put"`` stamps the source
    array and ``put``\\ s it (plexa copies it in). ``latency=True`` stamps
    ``time.monotonic_ns()`` (taken after the frame is written), otherwise the frame number.
    ``rate_hz=0`` sends as fast as the link allows.
    """

    outputs = plexa.ports("out")

    def setup(
        self,
        shape: list[int] | tuple[int, ...] = (100,),
        dtype: str = "uint8",
        mode: str = "loan",
        rate_hz: float = 0.0,
        latency: bool = False,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.loan = mode == "loan"
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.latency = latency
        self.source = np.arange(int(np.prod(self.shape)), dtype=self.dtype).reshape(self.shape)
        self.count = 0
        self.due = time.monotonic()

    def run_step(self) -> None:
        if self.period:
            delay = self.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.due = max(self.due + self.period, time.monotonic() - self.period)
        out = self.outputs.out
        if self.loan:
            with out.loan(self.shape, self.dtype) as frame:
                np.copyto(frame, self.source)
                stamp(frame, time.monotonic_ns() if self.latency else self.count)
        else:
            stamp(self.source, time.monotonic_ns() if self.latency else self.count)
            out.put(self.source)
        self.count += 1


class Consumer(plexa.Actor):
    """Handles each frame on ``inp``: reads its ends, sums it, or records its latency.

    With ``work="latency"`` the send times and one-way latencies (ns, one row per message)
    are saved to ``out`` (``.npy``) when the actor stops, for the benchmark to read.
    """

    def setup(self, work: str = "ends", out: str = "", max_samples: int = 100_000) -> None:
        self.work = work
        self.out = out
        self.latency = work == "latency"
        self.samples = np.zeros((max_samples if self.latency else 1, 2), np.int64)
        self.count = 0

    @plexa.on("inp")
    def got(self, frame: npt.NDArray[Any]) -> None:
        if self.latency:
            if self.count < len(self.samples):
                now = time.monotonic_ns()
                sent_at = read_stamp(frame)
                self.samples[self.count] = sent_at, now - sent_at
        else:
            consume(frame, self.work)
        self.count += 1

    def stop(self) -> None:
        if self.latency and self.out:
            np.save(self.out, self.samples[: min(self.count, len(self.samples))])


class Ticker(plexa.Actor):
    """An idle source: one small array on ``out`` every ``period`` seconds.

    Each step sleeps at most ``nap`` seconds, so commands still apply promptly.
    """

    outputs = plexa.ports("out")

    def setup(self, period: float = 1.0, nap: float = 0.1) -> None:
        self.period = period
        self.nap = nap
        self.due = time.monotonic() + period
        self.payload = np.zeros(100, np.uint8)

    def run_step(self) -> None:
        left = self.due - time.monotonic()
        if left > 0:
            time.sleep(min(left, self.nap))
            return
        self.due += self.period
        self.outputs.out.put(self.payload)


class Relay(plexa.Actor):
    """Forwards every message from ``inp`` to ``out``."""

    outputs = plexa.ports("out")

    @plexa.on("inp")
    def got(self, msg: npt.NDArray[Any]) -> None:
        self.outputs.out.put(msg)


class Sink(plexa.Actor):
    """Counts what arrives on ``inp``."""

    def setup(self) -> None:
        self.count = 0

    @plexa.on("inp")
    def got(self, msg: npt.NDArray[Any]) -> None:
        self.count += 1
