"""plexa: a generator actor that fills loaned frames and a processor actor with a handler,
joined by a lossless (``block``) link of capacity IN_FLIGHT, run with ``plexa run``.

Run as a launcher (``python peer_plexa.py CONFIG``), it writes the pipeline file and
replaces itself with ``python -m plexa run FILE``: Ctrl-C (SIGINT) quits the run as it does
for a user. The actor processes import this module (its directory is on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from workload import DTYPE, IN_FLIGHT, SHAPE, Config, Generator, Processor

import plexa


class Gen(plexa.Actor):
    """Sends one loaned, filled and stamped frame per step."""

    outputs = plexa.ports("frames")

    def setup(self, ctl: str = "") -> None:
        self.gen = Generator(ctl)
        self.dtype = np.dtype(DTYPE)

    def run_step(self) -> None:
        delay = self.gen.delay()
        if delay > 0:
            time.sleep(min(delay, 0.01))  # short naps: commands still apply promptly
            return
        with self.outputs.frames.loan(SHAPE, self.dtype) as frame:
            self.gen.fill(frame)
        self.gen.sent()


class Proc(plexa.Actor):
    """Handles each frame: the workload's accounting and ``frame.mean()``."""

    def setup(self, ctl: str = "") -> None:
        self.proc = Processor(ctl)

    @plexa.on("frames")
    def frame(self, frame: Any) -> None:
        self.proc.handle(frame)


def main() -> None:
    cfg = Config.from_json(sys.argv[1])
    work = Path(cfg.workdir)
    spec = {
        "name": f"peers-{work.name}",
        "actors": {
            "gen": {"class": "peer_plexa:Gen", "options": {"ctl": cfg.ctl}},
            "proc": {"class": "peer_plexa:Proc", "options": {"ctl": cfg.ctl}},
        },
        "connections": {
            "gen.frames": {"to": ["proc.frames"], "policy": "block", "capacity": IN_FLIGHT}
        },
    }
    path = work / "pipeline.yaml"
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    os.execv(sys.executable, [sys.executable, "-m", "plexa", "run", str(path)])


if __name__ == "__main__":
    main()
