"""A synthetic imaging pipeline: a camera streaming frames, ROI traces, a rate monitor."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

import plexa


class FrameSource(plexa.Actor):
    """Emits synthetic uint16 frames at ``rate_hz`` (0: as fast as the link allows).

    Each frame is written straight into shared memory with ``loan``; pixel (0, 0) carries
    the frame number so consumers can check order.
    """

    outputs = plexa.ports("frames")

    def setup(
        self,
        shape: list[int] | tuple[int, ...] = (512, 512),
        rate_hz: float = 100.0,
        frames: int = 0,
        seed: int = 0,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.limit = frames
        rng = np.random.default_rng(seed)
        self.bank = rng.integers(0, 4096, size=(4, *self.shape), dtype=np.uint16)
        self.count = 0
        self.due = time.monotonic()

    def run_step(self) -> None:
        if self.limit and self.count >= self.limit:
            time.sleep(0.01)
            return
        if self.period:
            delay = self.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.due = max(self.due + self.period, time.monotonic() - self.period)
        with self.outputs.frames.loan(self.shape, np.uint16) as frame:
            np.copyto(frame, self.bank[self.count % len(self.bank)])
            frame.flat[0] = self.count % 65536
        self.count += 1


class RoiTraces(plexa.Actor):
    """Averages ``n_rois`` square regions of each frame into one trace vector per frame."""

    outputs = plexa.ports("traces")

    def setup(self, n_rois: int = 16, size: int = 16, seed: int = 1) -> None:
        self.n_rois = n_rois
        self.size = size
        self.seed = seed
        self.corners: npt.NDArray[np.int64] | None = None

    @plexa.on("frames")
    def frame(self, frame: npt.NDArray[np.uint16]) -> None:
        if self.corners is None:
            rng = np.random.default_rng(self.seed)
            high = np.array(frame.shape[:2]) - self.size
            self.corners = rng.integers(0, np.maximum(high, 1), size=(self.n_rois, 2))
        s = self.size
        traces = np.array(
            [frame[y : y + s, x : x + s].mean() for y, x in self.corners], dtype=np.float32
        )
        self.outputs.traces.put(traces)


class RateMonitor(plexa.Actor):
    """Counts traces and logs the rate every ``every`` seconds."""

    def setup(self, every: float = 1.0) -> None:
        self.every = every
        self.count = 0
        self.last_count = 0
        self.last = time.monotonic()

    @plexa.on("traces")
    def traces(self, traces: npt.NDArray[np.float32]) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            rate = (self.count - self.last_count) / (now - self.last)
            self.log.info("%.1f traces/s (%d in all)", rate, self.count)
            self.last, self.last_count = now, self.count
