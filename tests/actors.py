"""Actors used by the tests (imported in actor processes as ``actors:Name``)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

import plexa


class Source(plexa.Actor):
    """Sends ``count`` messages (dicts, or arrays of ``size`` bytes carrying their number:
    1-D when put, 2-D when loaned)."""

    outputs = plexa.ports("out")

    def setup(
        self, count: int = 100, size: int = 0, rate_hz: float = 0.0, loan: bool = False
    ) -> None:
        self.count = count
        self.size = size
        self.period = 1.0 / rate_hz if rate_hz else 0.0
        self.loan = loan
        self.sent = 0

    def run_step(self) -> None:
        if self.sent >= self.count:
            time.sleep(0.005)
            return
        if self.period:
            time.sleep(self.period)
        if self.size and self.loan:
            with self.outputs.out.loan([self.size // 64, 8], np.int64) as buf:  # a list works
                buf[:] = self.sent
        elif self.size:
            self.outputs.out.put(np.full(self.size // 8, self.sent, dtype=np.int64))
        else:
            self.outputs.out.put({"n": self.sent, "pid": os.getpid()})
        self.sent += 1


class Burst(plexa.Actor):
    """Puts ``count`` small messages back to back in its first step (a batch on Zenoh), then
    only sleeps: nothing follows them, and no safe point falls inside a step."""

    outputs = plexa.ports("out")

    def setup(self, count: int = 5) -> None:
        self.count = count
        self.done = False

    def run_step(self) -> None:
        if self.done:
            time.sleep(0.05)
            return
        for i in range(self.count):
            self.outputs.out.put({"n": i, "t": time.time()})
        self.done = True


class Stamped(plexa.Actor):
    """Keeps how long each message took (the sender's ``t`` to its handling, one clock)."""

    def setup(self) -> None:
        self.delays: list[float] = []

    @plexa.on("inp")
    def got(self, msg: dict[str, Any]) -> None:
        self.delays.append(time.time() - msg["t"])

    def stop(self) -> None:
        self.store.put({"delays": self.delays}, key=f"result:{self.name}")


class Sink(plexa.Actor):
    """Records what it receives; ``delay`` slows each message; results go to the store."""

    def setup(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[Any] = []
        self.views: list[dict[str, Any]] = []

    @plexa.on("inp")
    def got(self, msg: Any) -> None:
        if isinstance(msg, np.ndarray):
            self.seen.append(int(msg.flat[0]))
            if len(self.views) < 3:
                self.views.append(_describe(msg))
        else:
            self.seen.append(msg["n"] if isinstance(msg, dict) else msg)
        if self.delay:
            time.sleep(self.delay)

    def stop(self) -> None:
        self.store.put({"seen": self.seen, "views": self.views}, key=f"result:{self.name}")


def _describe(arr: np.ndarray) -> dict[str, Any]:
    """Where an array's memory lies: the mapping of /proc/self/maps that holds its data."""
    addr = arr.__array_interface__["data"][0]
    mapping = ""
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, *rest = line.split()
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                mapping = rest[-1] if len(rest) >= 5 else ""
                break
    try:
        arr[0] = 1
        writable = True
    except ValueError:
        writable = False
    return {"mapping": mapping, "writeable_flag": bool(arr.flags.writeable), "writable": writable}


class Keeper(plexa.Actor):
    """Keeps every received array without copying, then checks none changed."""

    def setup(self) -> None:
        self.kept: list[np.ndarray] = []

    @plexa.on("inp")
    def got(self, msg: np.ndarray) -> None:
        if len(self.kept) < 2:
            self.kept.append(msg)

    def stop(self) -> None:
        self.store.put(
            [int(a[0]) for a in self.kept] + [int(a[-1]) for a in self.kept],
            key=f"result:{self.name}",
        )


class Fails(plexa.Actor):
    """Raises in the phase named by ``phase`` (setup, run or stop)."""

    outputs = plexa.ports("out")

    def setup(self, phase: str = "run") -> None:
        self.phase = phase
        if phase == "setup":
            raise ValueError("boom in setup")

    def run_step(self) -> None:
        if self.phase == "run":
            raise ValueError("boom in run")
        time.sleep(0.01)

    def stop(self) -> None:
        if self.phase == "stop":
            raise ValueError("boom in stop")


class Idle(plexa.Actor):
    """Does nothing; a handler-less, step-less actor."""

    @plexa.on("inp")
    def got(self, msg: Any) -> None:
        pass


class Stubborn(plexa.Actor):
    """Ignores signals: stuck in user code that never reaches a safe point."""

    def run_step(self) -> None:
        self.log.info("stuck in user code")
        while True:
            time.sleep(1)


class Ticker(plexa.AsyncActor):
    """An async source: sends ``count`` numbers, with a safe point before each."""

    outputs = plexa.ports("out")

    def setup(self, count: int = 50) -> None:
        self.count = count

    async def run(self) -> None:
        import asyncio

        for i in range(self.count):
            await asyncio.sleep(0.002)
            await self.checkpoint()
            self.outputs.out.put(i)


class Chatty(plexa.Actor):
    """Logs a numbered line every ``every`` seconds, and prints one to stdout at setup."""

    def setup(self, every: float = 0.05) -> None:
        self.every = every
        self.n = 0
        print(f"hello from {self.name}", flush=True)

    def run_step(self) -> None:
        self.log.info("line %d from %s", self.n, self.name)
        self.n += 1
        time.sleep(self.every)


class Counter(plexa.Actor):
    """Counts messages (and the highest number seen); optionally slow."""

    def setup(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.count = 0

    @plexa.on("inp")
    def got(self, msg: Any) -> None:
        self.count += 1
        if self.delay:
            time.sleep(self.delay)


class Relay(plexa.Actor):
    """Passes every message on."""

    outputs = plexa.ports("out")

    @plexa.on("inp")
    def got(self, msg: Any) -> None:
        self.outputs.out.put(msg)


class LongFit(plexa.Actor):
    """A long computation: steps of many small chunks with a safe point after each."""

    def setup(
        self, total: int = 10**9, chunk_s: float = 0.001, improve_every: int = 25, rate: float = 1.0
    ) -> None:
        self.i = 0
        self.total = total
        self.chunk_s = chunk_s
        self.improve_every = improve_every
        self.rate = rate

    def run_step(self) -> None:
        for _ in range(200):
            time.sleep(self.chunk_s)
            self.i += 1
            self.progress(self.i, self.total, f"chunk {self.i}", loss=1.0 / self.i, phase="fit")
            if self.i % self.improve_every == 0:
                self.improved({"i": self.i}, score=float(self.i))
            self.safe_point()

    def get_state(self) -> dict[str, int]:
        return {"i": self.i}

    def set_state(self, state: dict[str, int]) -> None:
        self.i = state["i"]

    @plexa.command
    def where(self) -> int:
        return self.i

    @plexa.command
    def explode(self) -> None:
        raise RuntimeError("kaboom")


def square(x: int) -> int:
    """A pool task."""
    return x * x


def slow_square(x: int) -> int:
    """A slow pool task."""
    time.sleep(0.2)
    return x * x


class Mapper(plexa.Actor):
    """Runs ``imap`` over many slow tasks, reporting each result as progress."""

    def setup(self, n: int = 1000) -> None:
        self.n = n
        self.results: list[int] = []

    def run_step(self) -> None:
        for _, value in self.imap(slow_square, range(self.n), enumerated=True):
            self.results.append(value)
            self.progress(len(self.results), self.n)
        time.sleep(0.01)

    def stop(self) -> None:
        self.store.put(self.results, key=f"result:{self.name}")


def payloads() -> list[Any]:
    """Messages of every shape a link must carry, in an order that makes the producer's
    samples grow twice (past 64 KB, then past 1 MB) and layouts come back after others."""
    return [
        np.arange(12, dtype=np.int16).reshape(3, 4),
        None,
        np.zeros((0,), np.float32),
        np.zeros((2, 0, 3)),
        np.array(3.5),
        np.arange(5, dtype=">i4"),
        np.array([True, False]),
        {"n": 1, "arr": np.arange(3.0), "text": "é"},
        np.arange(40_000, dtype=np.float64),  # 320 KB: the samples grow
        "a string",
        np.arange(12, dtype=np.int16).reshape(3, 4),  # a layout seen before
        np.full((512, 512, 2), 7, np.uint16),  # 1 MB: they grow again
        np.arange(4, dtype=np.complex64)[::2],  # not contiguous
        [np.ones(2), (1, 2)],
    ]


class Payloads(plexa.Actor):
    """Sends :func:`payloads` once, in order."""

    outputs = plexa.ports("out")

    def setup(self) -> None:
        self.todo = payloads()

    def run_step(self) -> None:
        if self.todo:
            self.outputs.out.put(self.todo.pop(0))
        else:
            time.sleep(0.005)


class Copier(plexa.Actor):
    """Keeps a private copy of everything received; results go to the store."""

    def setup(self) -> None:
        self.got: list[Any] = []
        self.flags: list[bool] = []

    @plexa.on("inp")
    def got_one(self, msg: Any) -> None:
        if isinstance(msg, np.ndarray):
            self.flags.append(bool(msg.flags.writeable))
            msg = msg.copy()
        self.got.append(msg)

    def stop(self) -> None:
        self.store.put({"got": self.got, "writeable": self.flags}, key=f"result:{self.name}")


class Getter(plexa.Actor):
    """Reads ``inp`` with ``get``; once every producer is gone, notes how many it got."""

    inputs = plexa.ports("inp")

    def setup(self) -> None:
        self.n = 0

    def run_step(self) -> None:
        try:
            self.inputs.inp.get(timeout=0.2)
            self.n += 1
        except plexa.Timeout:
            return
        except plexa.LinkClosed:
            self.store.put(self.n, key="closed")
            time.sleep(0.05)


class Spawner(plexa.Actor):
    """Starts three processes that outlive nothing: a plain child, a double-forked orphan
    and one in a new session; puts their pids in the store under ``children``."""

    def setup(self) -> None:
        import subprocess

        plain = subprocess.Popen(["sleep", "1000"])
        session = subprocess.Popen(["sleep", "1001"], start_new_session=True)
        read, write = os.pipe()
        if os.fork() == 0:  # the child forks the orphan and leaves at once
            if os.fork() == 0:
                os.close(read)
                os.write(write, str(os.getpid()).encode())
                os.close(write)
                os.execvp("sleep", ["sleep", "1002"])
            os._exit(0)
        os.close(write)
        orphan = int(os.read(read, 32))
        os.close(read)
        self.store.put([plain.pid, session.pid, orphan], key="children")

    def run_step(self) -> None:
        time.sleep(0.01)


class Dice(plexa.Actor):
    """Draws from Python's and numpy's random streams; puts the draws under ``key``."""

    def setup(self, key: str = "dice") -> None:
        import random

        self.store.put({"py": random.random(), "np": float(np.random.random())}, key=key)

    def run_step(self) -> None:
        time.sleep(0.01)


class Forker(plexa.Actor):
    """Forks a child that only sleeps (no exec: it carries no mark of its own); puts its pid
    in the store under ``forked``."""

    def setup(self) -> None:
        pid = os.fork()
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        self.store.put(pid, key="forked")

    def run_step(self) -> None:
        time.sleep(0.01)
