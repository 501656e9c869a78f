"""The worker pool behind ``Actor.map``/``imap``: real spawned processes.

The functions the workers run are defined at module level here: spawned workers import
this module as ``test_pool`` (the tests directory is on ``sys.path``, see conftest).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from conftest import alive, assert_stays, settled, wait_for
from plexa.errors import Aborted, PlexaError, RemoteError
from plexa.runtime.pool import WorkerPool

HERE = Path(__file__).parent


# ----- functions run by the workers ---------------------------------------------------------
def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def nap_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickling it calls __init__(msg): fails
        super().__init__(f"{a}/{b}")


def fail_oddly(x: int) -> int:
    raise Unpicklable(x, x)


def inspect_array(arr: Any) -> tuple[str, bool, Any]:
    return type(arr).__name__, bool(arr.flags.writeable), arr * 2


def arrays_in_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v + 1 for k, v in d.items()}


# ----- fixtures -------------------------------------------------------------------------------
def pool_shm() -> list[str]:
    return [p for p in os.listdir("/dev/shm") if p.startswith("plxpool_")]


@pytest.fixture(autouse=True)
def no_pool_shm() -> Iterator[None]:
    """No test may leave a ``plxpool_`` entry in /dev/shm."""
    assert pool_shm() == []
    yield
    assert pool_shm() == []


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    """A pool shared by the tests that need no special safe point: 2 workers, window 4."""
    with WorkerPool(2, window=4) as p:
        yield p




# ----- results --------------------------------------------------------------------------------
def test_map_returns_every_result_once_in_order(pool: WorkerPool) -> None:
    assert pool.map(square, range(50)) == [x * x for x in range(50)]
    assert pool.map(square, []) == []


def test_imap_unordered_returns_every_result_once(pool: WorkerPool) -> None:
    delays = [0.2, 0.0, 0.1, 0.0, 0.05, 0.0, 0.0, 0.0]
    got = list(pool.imap(nap, delays, ordered=False))
    assert sorted(got) == sorted(delays)
    assert got != delays  # the 0.2 s task finished after the quick ones


def test_enumerated_gives_indexes(pool: WorkerPool) -> None:
    got = list(pool.imap(square, range(20), ordered=False, enumerated=True))
    assert sorted(i for i, _ in got) == list(range(20))
    assert all(v == i * i for i, v in got)
    assert list(pool.imap(square, [5, 6], enumerated=True)) == [(0, 25), (1, 36)]


def test_exception_propagates_with_the_remote_traceback(pool: WorkerPool) -> None:
    with pytest.raises(ValueError, match="bad item 3") as info:
        pool.map(fail_on_three, range(10))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteError)
    assert "fail_on_three" in cause.traceback and "ValueError: bad item 3" in cause.traceback
    with pytest.raises(RemoteError, match="Unpicklable") as info2:  # not rebuildable: RemoteError
        pool.map(fail_oddly, [1])
    assert "fail_oddly" in info2.value.traceback
    assert pool.map(square, [1, 2]) == [1, 4]  # the pool still works


def test_lambda_is_refused_up_front(pool: WorkerPool) -> None:
    with pytest.raises(TypeError, match="module-level function"):
        pool.imap(lambda x: x, [1])


def test_generator_is_consumed_with_a_bounded_window(pool: WorkerPool) -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    results = pool.imap(square, items())
    first = next(results)
    assert first == 0
    assert pulled <= pool.window
    seen = 1
    total = first
    for value in results:
        seen += 1
        total += value
        assert pulled - seen <= pool.window
    assert seen == 10_000 and total == sum(i * i for i in range(10_000))


def test_infinite_generator_can_be_left(pool: WorkerPool) -> None:
    def forever() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    got = []
    for value in pool.imap(square, forever()):
        got.append(value)
        if len(got) == 30:
            break
    assert got == [i * i for i in range(30)]
    assert pool.map(square, [3]) == [9]


def test_a_later_call_supersedes_a_suspended_one(pool: WorkerPool) -> None:
    first = pool.imap(square, range(100))
    assert next(first) == 0
    assert pool.map(square, [4]) == [16]
    with pytest.raises(RuntimeError, match="cancelled"):
        next(first)


# ----- numpy through shared memory ------------------------------------------------------------
def test_numpy_arrays_go_through_shared_memory(pool: WorkerPool) -> None:
    arr = np.random.default_rng(0).random(1 << 20)  # 8 MB
    before = dict(pool.stats)
    [(kind, writeable, doubled)] = pool.map(inspect_array, [arr])
    assert kind == "ndarray" and writeable
    np.testing.assert_array_equal(doubled, arr * 2)
    pipe = pool.stats["pipe_bytes"] - before["pipe_bytes"]
    shm = pool.stats["shm_bytes"] - before["shm_bytes"]
    assert shm == 2 * arr.nbytes  # there and back
    assert pipe < 4096, f"{pipe} bytes went through the socket"
    nested: dict[str, Any] = {
        "a": np.arange(100_000, dtype=np.int64),
        "b": np.ones((300, 300), np.float32),
    }
    out: list[dict[str, Any]] = pool.map(arrays_in_dict, [nested, nested])
    for res in out:
        np.testing.assert_array_equal(res["a"], nested["a"] + 1)
        np.testing.assert_array_equal(res["b"], nested["b"] + 1)
    small = np.arange(10)
    assert (pool.map(inspect_array, [small])[0][2] == small * 2).all()
    assert pool_shm() == []


# ----- safe points ------------------------------------------------------------------------------
def test_abort_at_a_safe_point_cancels_the_rest() -> None:
    got: list[int] = []
    reached = 0.0

    def safe_point() -> None:
        if len(got) >= 2:
            raise Aborted()

    with WorkerPool(2, safe_point=safe_point) as p:
        assert len(p.map(nap, [0, 0])) == 2  # workers up before the clock starts
        got.clear()
        started = time.monotonic()
        with pytest.raises(Aborted):
            for value in p.imap(nap_then_pid, [0.0, 0.0, *[10.0] * 6]):
                got.append(value)
                if len(got) == 2:
                    reached = time.monotonic()
        assert time.monotonic() - reached < 2.0, "cancelling took too long"
        assert time.monotonic() - started < 5.0
        busy = set(got)  # the workers that went on to the 10 s tasks
        assert not (busy & set(p.pids)), "a worker still holds cancelled work"
        wait_for(lambda: not any(alive(pid) for pid in busy), 2.0, "busy workers to end")
        got.clear()
        assert p.map(square, [2, 3]) == [4, 9]  # workers restarted on demand
    assert pool_shm() == []


def test_pause_at_a_safe_point_holds_submission() -> None:
    running = threading.Event()
    running.set()
    pulled = 0
    results: list[float] = []

    def items() -> Iterator[float]:
        nonlocal pulled
        for _ in range(40):
            pulled += 1
            yield 0.02

    def consume(p: WorkerPool) -> None:
        results.extend(p.imap(nap, items()))

    def safe_point() -> None:
        running.wait()

    with WorkerPool(2, safe_point=safe_point, window=4) as p:
        p.map(nap, [0, 0])
        thread = threading.Thread(target=consume, args=(p,))
        thread.start()
        wait_for(lambda: len(results) >= 5, 10.0, "some results")
        running.clear()  # pause: what was in flight finishes, then nothing moves
        held = settled(lambda: (pulled, len(results)))
        assert_stays(lambda: (pulled, len(results)) == held, 0.5, "nothing moving while paused")
        assert held[0] < 40
        running.set()  # resume
        thread.join(10.0)
        assert not thread.is_alive()
    assert results == [0.02] * 40


# ----- processes ------------------------------------------------------------------------------
def test_close_leaves_no_worker_alive() -> None:
    p = WorkerPool(2)
    p.map(square, range(4))
    pids = p.pids
    assert len(pids) == 2
    children = {c.pid for c in psutil.Process().children(recursive=True)}
    assert set(pids) <= children
    p.close()
    assert not any(alive(pid) for pid in pids)
    assert not set(pids) & {c.pid for c in psutil.Process().children(recursive=True)}
    p.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        p.map(square, [1])


def test_close_stops_workers_mid_task() -> None:
    p = WorkerPool(2)
    it = p.imap(nap_then_pid, [0.0, 30.0])
    quick = next(it)  # the 30 s task is running in the other worker
    [slow] = [pid for pid in p.pids if pid != quick]
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started < 3.0
    assert not alive(slow) and not alive(quick)
    with pytest.raises(RuntimeError, match="cancelled"):
        next(it)


def test_a_killed_worker_raises_instead_of_hanging() -> None:
    with WorkerPool(1) as p:
        [pid] = p.map(nap_then_pid, [0.0])
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(PlexaError, match=r"worker died.*SIGKILL"):
            p.map(nap, [30.0])
        assert time.monotonic() - started < 3.0
        assert p.map(square, [5]) == [25]  # replaced on demand


ACTOR = """
import sys, threading
sys.path.insert(0, {tests!r})
from plexa.runtime.pool import WorkerPool
from test_pool import nap, nap_then_pid

def main():
    pool = WorkerPool(2)
    print(*pool.map(nap_then_pid, [0.3, 0.3]), flush=True)
    pool.map(nap, [60.0, 60.0])

if __name__ == "__main__":
    if {threaded}:  # no PR_SET_PDEATHSIG: the workers notice their parent changed
        threading.Thread(target=main).start()
    else:
        main()
"""


@pytest.mark.parametrize("threaded", [False, True])
def test_workers_die_with_a_killed_actor(tmp_path: Path, threaded: bool) -> None:
    script = tmp_path / "actor.py"
    script.write_text(ACTOR.format(tests=str(HERE), threaded=threaded))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), 2.0, "orphaned workers to exit")
