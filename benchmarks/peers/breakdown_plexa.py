"""Where plexa's 200 Hz latency goes, stage by stage, from the stamp to the handler.

Benchmark-only instrumentation, installed in the processor's own process when its actor is
set up (nothing in ``src/`` changes): the runtime's idle wait and the link's wake-up wait
are wrapped so they note when they return, and the input port's ``take`` is replaced by a
copy of ``plexa.data.inputs._Sub.take`` (same steps, same order, metrics on) with a clock
read between its steps. The generator notes when its loan was sent. Each frame gives one
row of ``time.monotonic_ns()`` marks (:data:`MARKS`), which ``peers.py --breakdown`` turns
into stage durations.

The marks cost about 1 µs per frame (eight clock reads and two wrapper calls), which the
total includes. The copy of ``take`` follows the receive path of the commit it was written
against; when that path changes, the copy must change with it (``--breakdown`` then
measures the new path).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from workload import DTYPE, SHAPE, Generator

import plexa

ROWS = 1 << 16
MARKS = ("seq", "stamp", "wait", "idle", "take", "receive", "account", "decode", "handler")
"""The columns of a row: the frame's number, its stamp, then when the wake-up wait returned
(0: the frame came during the spin before it), when the runtime's idle step returned, when
``take`` began, when the sample was received, when it was accounted for (sequence check,
counters, producer wake-up, sampled latency), when it was decoded, and when the handler
began."""


class StampGen(plexa.Actor):
    """The workload's generator (loaned frames) noting when each frame's send returned."""

    outputs = plexa.ports("frames")

    def setup(self, ctl: str = "", sent: str = "") -> None:
        self.gen = Generator(ctl)
        self.dtype = np.dtype(DTYPE)
        self.sent_at = np.memmap(sent, np.int64, "r+", shape=(ROWS,))

    def run_step(self) -> None:
        delay = self.gen.delay()
        if delay > 0:
            time.sleep(min(delay, 0.01))
            return
        seq = self.gen.seq
        with self.outputs.frames.loan(SHAPE, self.dtype) as frame:
            self.gen.fill(frame)
        self.sent_at[seq % ROWS] = time.monotonic_ns()
        self.gen.sent()


class MarkProc(plexa.Actor):
    """The workload's processor, with the receive path instrumented (see the module)."""

    def setup(self, ctl: str = "", rows: str = "") -> None:
        self.rows = np.memmap(rows, np.int64, "r+", shape=(ROWS, len(MARKS)))
        self.count = 0
        self.marks = marks = {"wait": 0, "idle": 0}
        _instrument(self, marks)

    @plexa.on("frames")
    def frame(self, frame: Any) -> None:
        now = time.monotonic_ns()
        head = frame.reshape(-1).view(np.uint64)
        row = self.rows[self.count % ROWS]
        row[0], row[1] = int(head[0]), int(head[1])
        row[2], row[3] = self.marks["wait"], self.marks["idle"]
        row[4:8] = self.marks["take"]
        row[8] = now
        self.count += 1
        frame.mean()


def _instrument(actor: MarkProc, marks: dict[str, Any]) -> None:
    from plexa.data import domain, inputs, links, payload
    from plexa.data.counters import LinkField
    from plexa.runtime import process

    clock = time.monotonic_ns
    # The actor process runs ``python -m plexa.runtime.process``: its class lives in __main__.
    runner = getattr(sys.modules["__main__"], "ActorProcess", process.ActorProcess)
    wait, idle = domain.Wake.wait, runner.idle

    def timed_wait(self: Any, timeout: float) -> bool:
        got = wait(self, timeout)
        marks["wait"] = clock()
        return bool(got)

    def timed_idle(self: Any, pending: list[Any]) -> None:
        marks["wait"] = 0
        idle(self, pending)
        marks["idle"] = clock()

    domain.Wake.wait = timed_wait  # type: ignore[method-assign]
    runner.idle = timed_idle
    port = actor.inputs["frames"]
    (sub,) = port._subs
    words, seq_i, t_i, layout_i, meta_i = domain.Words, domain.SEQ, domain.T_NS, domain.LAYOUT, 3
    mask, empty = links.SAMPLE_MASK, inputs.EMPTY
    stamps = np.zeros(4, np.int64)
    marks["take"] = stamps

    def take() -> Any:
        t0 = clock()
        sample = sub.subscriber.receive()
        if sample is None:
            return empty
        t1 = clock()
        header = words.from_address(sample.user_header_ptr)
        seq = header[seq_i]
        if seq != sub.expected:
            sub._gap(seq)
        sub.expected = seq + 1
        row = sub.row
        row[LinkField.CONSUMED] = seq + 1
        if sub.notifier is not None and row[LinkField.WAITING]:
            row[LinkField.WAITING] = 0
            sub.notifier.notify()
        if not seq & mask and sub.metrics:
            sub._time(header[t_i])
        t2 = clock()
        try:
            obj = payload.decode(header[layout_i], header[meta_i], sample)
        except Exception as exc:
            sub._unreadable(seq, exc)
            return empty
        stamps[:] = t0, t1, t2, clock()
        return obj

    assert meta_i == domain.META_LEN
    port.take = take
