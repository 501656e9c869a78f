"""improv's minimal demo, brought over by changing only the import line."""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from plexa.improv import Actor

logger = logging.getLogger(__name__)


class Generator(Actor):
    """Puts rows of a random matrix into the store and sends their keys."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.data: np.ndarray | None = None
        self.frame_num = 0

    def setup(self) -> None:
        self.data = np.random.default_rng(0).integers(100, size=(100, 5))
        logger.info("Completed setup for Generator")

    def stop(self) -> None:
        logger.info("Generator stopping after %d frames", self.frame_num)

    def runStep(self) -> None:
        assert self.data is not None and self.client is not None and self.q_out is not None
        row = self.data[self.frame_num % self.data.shape[0]]
        data_id = self.client.put(row, f"Gen_raw: {self.frame_num}")
        self.q_out.put([[data_id, str(self.frame_num)]])
        self.frame_num += 1
        time.sleep(0.005)


class Processor(Actor):
    """Takes keys, fetches the rows from the store and averages them."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frame_num = 0
        self.avg = 0.0

    def setup(self) -> None:
        self.frame_num = 0
        logger.info("Completed setup for Processor")

    def stop(self) -> None:
        logger.info("Processor stopping after %d frames (last mean %.2f)", self.frame_num, self.avg)

    def runStep(self) -> None:
        assert self.q_in is not None and self.client is not None
        frame = None
        with contextlib.suppress(Exception):
            frame = self.q_in.get(timeout=0.05)
        if frame is not None:
            row = self.client.getID(frame[0][0])
            self.avg = float(np.mean(row))
            self.frame_num += 1
