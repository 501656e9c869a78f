"""The limit: a shared-memory ring of IN_FLIGHT frames and two pipes, written by hand.

The launcher creates the ring (``multiprocessing.shared_memory``) and two pipes, then forks
the generator and the processor. The generator writes a frame into the next free slot and
one byte into the *data* pipe; the processor reads a byte, handles the slot, and writes one
byte into the *credit* pipe; the generator blocks on the credit pipe when all slots are in
flight. Ctrl-C (SIGINT) to the launcher ends the run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from workload import DTYPE, IN_FLIGHT, NBYTES, SHAPE, Config, Generator, Processor

_others: list[int] = []
"""Every pipe end; a forked child closes those it does not use (or it never sees EOF)."""


def _slots(shm: SharedMemory) -> list[Any]:
    ring = np.ndarray((IN_FLIGHT, *SHAPE), DTYPE, buffer=shm.buf)
    return [ring[i] for i in range(IN_FLIGHT)]


def generate(cfg: Config, shm: SharedMemory, data_w: int, credit_r: int, stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in _others:
        if fd not in (data_w, credit_r):
            os.close(fd)
    gen = Generator(cfg.ctl)
    slots = _slots(shm)
    credits = IN_FLIGHT
    while not stop.is_set():
        delay = gen.delay()
        if delay > 0:
            stop.wait(min(delay, 0.05))
            continue
        if credits == 0:
            credits += len(os.read(credit_r, IN_FLIGHT))
        gen.fill(slots[gen.seq % IN_FLIGHT])
        os.write(data_w, b"x")
        credits -= 1
        gen.sent()
    os.close(data_w)


def process(cfg: Config, shm: SharedMemory, data_r: int, credit_w: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in _others:
        if fd not in (data_r, credit_w):
            os.close(fd)
    proc = Processor(cfg.ctl)
    slots = _slots(shm)
    n = 0
    while ready := os.read(data_r, IN_FLIGHT):  # b"" once the generator closed its end
        for _ in ready:
            proc.handle(slots[n % IN_FLIGHT])
            n += 1
            os.write(credit_w, b"x")


def main() -> None:
    cfg = Config.from_json(sys.argv[1])
    ctx = mp.get_context("fork")
    shm = SharedMemory(create=True, size=IN_FLIGHT * NBYTES)
    data_r, data_w = os.pipe()
    credit_r, credit_w = os.pipe()
    _others.extend((data_r, data_w, credit_r, credit_w))
    stop = ctx.Event()
    procs = [
        ctx.Process(target=process, args=(cfg, shm, data_r, credit_w)),
        ctx.Process(target=generate, args=(cfg, shm, data_w, credit_r, stop)),
    ]
    for p in procs:
        p.start()
    shm.unlink()  # both children have it mapped: no kill of any process can leave the name behind
    for fd in (data_r, data_w, credit_r, credit_w):
        os.close(fd)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    stop.set()
    for p in reversed(procs):
        p.join()
    shm.close()


if __name__ == "__main__":
    main()
