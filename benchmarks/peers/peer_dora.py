"""dora-rs: two Python nodes in a dataflow file, run with ``dora run`` as dora's docs show.

The processor's ``frames`` input has ``queue_policy: backpressure`` (dora 1.1's lossless
option: the daemon holds the producer while the input's queue is full, instead of dropping
the oldest message) and ``queue_size: IN_FLIGHT``. That bounds the queue but not the frames
in flight between the two nodes, so the processor also sends a small ``done`` message back
per frame and the generator waits for it when IN_FLIGHT frames are unanswered (dora has no
credit option of its own). Frames travel as flat ``pyarrow`` uint16 arrays. The generator
has ``min_log_level: error``: dora 1.1 logs two diagnostic warnings per large message sent on
the daemon path, which a user would silence too.

Run as a launcher (``python peer_dora.py CONFIG``), it writes the dataflow file and replaces
itself with ``dora run FILE``; Ctrl-C (SIGINT) stops the dataflow as it does for a user.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from workload import IN_FLIGHT, SHAPE, Config, Generator, Processor


def generate(cfg: Config) -> None:
    from dora import Node

    node = Node()
    gen = Generator(cfg.ctl)
    answered = 0
    while True:
        delay = gen.delay()
        wait = delay if delay > 0 else (1.0 if gen.seq - answered >= IN_FLIGHT else 0.0)
        event = node.next(timeout=wait) if wait > 0 else None
        if event is not None:
            if event["type"] == "STOP":
                return
            if event["type"] == "INPUT" and event["id"] == "done":
                answered += len(event["value"])
            continue
        if delay > 0 or gen.seq - answered >= IN_FLIGHT:
            continue
        node.send_output("frames", pa.array(gen.frame().reshape(-1)))
        gen.sent()


def process(cfg: Config) -> None:
    from dora import Node

    node = Node()
    proc = Processor(cfg.ctl)
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] == "INPUT" and event["id"] == "frames":
            frame = event["value"].to_numpy(zero_copy_only=True).reshape(SHAPE)
            proc.handle(frame)
            node.send_output("done", pa.array(np.ones(1, np.uint8)))


def main() -> None:
    if sys.argv[1] in ("generator", "processor"):
        cfg = Config.from_json(sys.argv[2])
        (generate if sys.argv[1] == "generator" else process)(cfg)
        return
    cfg = Config.from_json(sys.argv[1])
    work = Path(cfg.workdir)
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    arg = json.dumps(cfg.to_json())  # one quoted shell word
    dataflow = {
        "nodes": [
            {
                "id": "generator",
                "path": __file__,
                "args": f"generator {arg}",
                "inputs": {"done": {"source": "processor/done", "queue_size": 4 * IN_FLIGHT}},
                "outputs": ["frames"],
                "env": env,
                "min_log_level": "error",
            },
            {
                "id": "processor",
                "path": __file__,
                "args": f"processor {arg}",
                "inputs": {
                    "frames": {
                        "source": "generator/frames",
                        "queue_size": IN_FLIGHT,
                        "queue_policy": "backpressure",
                    }
                },
                "outputs": ["done"],
                "env": env,
            },
        ]
    }
    path = work / "dataflow.yml"
    path.write_text(json.dumps(dataflow, indent=1))  # JSON is YAML
    dora = str(Path(sys.executable).with_name("dora"))
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.execv(dora, [dora, "run", str(path)])


if __name__ == "__main__":
    main()
