"""Ray: a generator actor and a processor actor, the frames passed as arguments of actor
method calls (Ray puts arrays this large in its shared-memory object store and hands the
processor a zero-copy view), the script as Ray's docs show (``ray.init()``, ``@ray.remote``).

At most IN_FLIGHT calls are pending: the generator waits with ``ray.wait`` for the oldest
to finish, the pattern Ray's docs give for limiting pending tasks. Ctrl-C (SIGINT) ends the
driver, which shuts Ray down.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import ray
from workload import IN_FLIGHT, Config, Generator, Processor


@ray.remote
class ProcActor:
    def __init__(self, ctl: str) -> None:
        self.proc = Processor(ctl)

    def handle(self, frame: Any) -> float:
        return self.proc.handle(frame)


@ray.remote
class GenActor:
    def __init__(self, ctl: str, processor: Any) -> None:
        self.gen = Generator(ctl)
        self.processor = processor

    def run(self) -> None:
        pending: list[Any] = []
        while True:
            delay = self.gen.delay()
            if delay > 0:
                time.sleep(delay)
                continue
            if len(pending) >= IN_FLIGHT:
                _, pending = ray.wait(pending, num_returns=1)
            pending.append(self.processor.handle.remote(self.gen.frame()))
            self.gen.sent()


def main() -> None:
    cfg = Config.from_json(sys.argv[1])
    ray.init()
    processor = ProcActor.remote(cfg.ctl)
    generator = GenActor.remote(cfg.ctl, processor)
    generator.run.remote()
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(1.0)
    ray.shutdown()


if __name__ == "__main__":
    main()
