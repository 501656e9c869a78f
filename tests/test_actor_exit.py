"""An actor process's way out: nothing on it may wait for a thread that has already ended,
and a whole run's quit leaves nothing behind."""

from __future__ import annotations

import time

import pytest
import zmq

from plexa import Nexus, loads
from plexa.core import messages as msgs
from plexa.runtime.control import Outbox


def test_a_nowait_send_after_the_reader_closed_raises_instead_of_hanging() -> None:
    """The last wake-up an actor sends its control thread (process.main) must not block:
    that thread may have seen the end by itself and closed its end already (a blocking
    PUSH send then waits forever; 2 quits in 15 took 5 s and a SIGTERM)."""
    ctx: zmq.Context[object] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://reader")
    outbox = Outbox(ctx, "inproc://reader")
    try:
        outbox.send(msgs.Heartbeat(1))
        assert msgs.decode(pull.recv()) == msgs.Heartbeat(1)
        pull.close()
        time.sleep(0.05)  # the inproc pipe's end reaches the sender
        began = time.monotonic()
        with pytest.raises(zmq.Again):
            outbox.send(msgs.Heartbeat(2), zmq.NOBLOCK)
        assert time.monotonic() - began < 0.5
    finally:
        outbox.close()
        ctx.destroy(linger=0)


IDLE = "actors:\n" + "\n".join(f"  a{i}: {{class: 'actors:Idle'}}" for i in range(20))


def test_twenty_idle_actors_quit_cleanly_and_leave_no_iceoryx2_file() -> None:
    """Each actor keeps its iceoryx2 nodes to its exit when the run quits (dropping one scans
    every node of the domain); the nexus then removes the whole domain: the no_leftovers
    fixture checks /dev/shm and the run directory. (How fast: benchmarks/scale.py.)"""
    nexus = Nexus(loads(IDLE, "idle20"))
    try:
        nexus.start()
        nexus.setup()
        nexus.run()
    finally:
        report = nexus.quit()
    assert report.clean, report
