"""Actors and tasks of the Ray tests (imported by actor processes and by Ray's workers)."""

from __future__ import annotations

import os
import time
from typing import Any

import plexa


def square_or_fail(item: tuple[int, int]) -> int:
    """A pool task: ``x * x``, or ValueError when ``x`` is the failing item."""
    x, fail_at = item
    if x == fail_at:
        raise ValueError(f"bad item {x}")
    return x * x


def slow_mark(item: tuple[int, str]) -> int:
    """A slow pool task that leaves a line in a file when it finishes."""
    x, path = item
    time.sleep(0.3)
    with open(path, "a") as fh:
        fh.write(f"{x} {os.getpid()}\n")
    return x


class RayMapper(plexa.Actor):
    """Maps ``square_or_fail`` (or ``slow_mark`` with ``marks``) over ``n`` items once."""

    def setup(self, n: int = 50, fail_at: int = -1, ordered: bool = True, marks: str = "") -> None:
        self.n, self.fail_at, self.ordered, self.marks = n, fail_at, ordered, marks
        self.results: list[Any] = []
        self.done = False

    def run_step(self) -> None:
        if self.done:
            time.sleep(0.01)
            return
        if self.marks:
            items: Any = ((x, self.marks) for x in range(self.n))
            task: Any = slow_mark
        else:
            items, task = ((x, self.fail_at) for x in range(self.n)), square_or_fail
        for index, value in self.imap(task, items, ordered=self.ordered, enumerated=True):
            self.results.append([index, value])
            self.progress(len(self.results), self.n)
        self.done = True
        self.store.put(self.results, key=f"result:{self.name}")
