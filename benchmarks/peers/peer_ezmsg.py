"""ezmsg: a publisher unit and a subscriber unit, each in its own process, as ezmsg's docs
show (``ez.run(..., process_components=...)``).

Lossless by ezmsg's default backpressure: the generator's output stream has IN_FLIGHT
buffers (``num_buffers``), and a publisher waits for a free one. Ctrl-C (SIGINT) ends the
run as it does for a user.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from typing import Any

import ezmsg.core as ez
import numpy as np
from workload import IN_FLIGHT, Config, Generator, Processor


class CtlSettings(ez.Settings):
    ctl: str


class Gen(ez.Unit):
    SETTINGS = CtlSettings
    OUT = ez.OutputStream(np.ndarray, num_buffers=IN_FLIGHT)

    async def initialize(self) -> None:
        self.gen = Generator(self.SETTINGS.ctl)

    @ez.publisher(OUT)
    async def frames(self) -> AsyncGenerator[Any, None]:
        while True:
            delay = self.gen.delay()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            yield self.OUT, self.gen.frame()
            self.gen.sent()


class Proc(ez.Unit):
    SETTINGS = CtlSettings
    INP = ez.InputStream(np.ndarray)

    async def initialize(self) -> None:
        self.proc = Processor(self.SETTINGS.ctl)

    @ez.subscriber(INP)
    async def on_frame(self, frame: np.ndarray) -> None:
        self.proc.handle(frame)


def main() -> None:
    cfg = Config.from_json(sys.argv[1])
    gen = Gen(CtlSettings(ctl=cfg.ctl))
    proc = Proc(CtlSettings(ctl=cfg.ctl))
    ez.run(
        GEN=gen,
        PROC=proc,
        connections=((gen.OUT, proc.INP),),
        process_components=(gen, proc),
    )


if __name__ == "__main__":
    main()
