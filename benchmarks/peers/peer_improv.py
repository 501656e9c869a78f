"""improv: a generator actor and a processor actor in a pipeline file, run headless with
``improv server`` and started with the ``setup`` and ``run`` commands its client sends.

The generator puts each frame into improv's store (a plasma store) and passes the object id
on its ``q_out`` link; the processor gets the id from ``q_in`` and the frame from the store.
improv's links are unbounded queues with no backpressure, so for at most IN_FLIGHT frames in
flight (and nothing evicted from the store before it is read) the processor answers each
frame on a ``done`` link and the generator waits for answers when IN_FLIGHT are outstanding.

Run as a launcher (``python peer_improv.py CONFIG``), it writes the pipeline file, starts
``improv server``, sends ``setup`` then ``run`` to its control port (as ``improv client``
does), and on Ctrl-C (SIGINT) sends ``quit`` the same way and waits for the server to end.
(The server runs in a session of its own: on a SIGINT of its own it shuts its actors down but
its process stays, waiting on threads, until it is killed.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

from improv.actor import Actor
from workload import IN_FLIGHT, NBYTES, Config, Ctl, Generator, Processor, Slot


class Gen(Actor):
    def __init__(self, *args: Any, ctl: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctl = ctl

    def setup(self) -> None:
        self.gen = Generator(self.ctl)
        self.answered = 0

    def runStep(self) -> None:  # improv's name
        done = self.links["done"]
        with contextlib.suppress(Empty):
            while True:
                self.answered += done.get_nowait()
        delay = self.gen.delay()
        if delay > 0:
            time.sleep(min(delay, 0.01))
            return
        if self.gen.seq - self.answered >= IN_FLIGHT:
            with contextlib.suppress(Empty):
                self.answered += done.get(timeout=0.05)
            return
        obj_id = self.client.put(self.gen.frame(), f"frame{self.gen.seq}")
        self.q_out.put(obj_id)
        self.gen.sent()


class Proc(Actor):
    def __init__(self, *args: Any, ctl: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctl = ctl

    def setup(self) -> None:
        self.proc = Processor(self.ctl)

    def runStep(self) -> None:  # improv's name
        try:
            obj_id = self.q_in.get(timeout=0.05)
        except Empty:
            return
        self.proc.handle(self.client.getID(obj_id))
        self.links["done"].put(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    import zmq

    cfg = Config.from_json(sys.argv[1])
    work = Path(cfg.workdir)
    pipeline = {
        "settings": {"store_size": 64 * NBYTES},
        "actors": {
            "Generator": {"package": "peer_improv", "class": "Gen", "ctl": cfg.ctl},
            "Processor": {"package": "peer_improv", "class": "Proc", "ctl": cfg.ctl},
        },
        "connections": {
            "Generator.q_out": ["Processor.q_in"],
            "Processor.done": ["Generator.done"],
        },
    }
    path = work / "pipeline.yaml"
    path.write_text(json.dumps(pipeline, indent=1))  # JSON is YAML
    control, output, logs = _free_port(), _free_port(), _free_port()
    improv = str(Path(sys.executable).with_name("improv"))
    bin_dir = str(Path(sys.executable).parent)  # improv starts `plasma_store` from PATH
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    server = subprocess.Popen(
        [
            *(improv, "server", "-c", str(control), "-o", str(output), "-l", str(logs)),
            *("-f", str(work / "improv.log"), "-a", str(Path(__file__).parent), str(path)),
        ],
        env=env,
        start_new_session=True,  # quit through the control port, as improv's client does
    )
    ctl = Ctl(cfg.ctl)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.connect(f"tcp://127.0.0.1:{control}")

    def command(text: str) -> None:
        sock.send_string(text)
        while not sock.poll(100):
            if server.poll() is not None:
                raise SystemExit(f"improv server exited with {server.returncode}")
        sock.recv_string()

    try:
        command("setup")
        while not ctl[Slot.SENT]:
            time.sleep(0.05)  # `run` is refused until every actor has reported ready
            command("run")
        signal.pause()
    except KeyboardInterrupt:
        pass
    sock.close(linger=0)  # Ctrl-C may have come between a request and its reply
    if server.poll() is None:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.connect(f"tcp://127.0.0.1:{control}")
        command("quit")
        sock.close(linger=0)
    server.wait()


if __name__ == "__main__":
    main()
