"""A pool of worker processes behind an actor's ``map``/``imap``, obedient to safe points.

Workers are started with the *spawn* context (never fork: the actor has threads and
shared-memory handles) on first use, and reused. Each has a socket pair of its own and runs
one task at a time, so the pool knows what every worker holds: cancelling drops the tasks
not handed out yet, waits 0.5 s for busy workers, then terminates them (restarted on demand).

Messages are pickle protocol 5. Out-of-band buffers of 64 KiB or more (numpy arrays...) do
not go through the socket: each direction of each worker has a reusable shared-memory arena
(an anonymous ``memfd`` named ``plxpool_``; a /dev/shm file unlinked at once elsewhere)
whose descriptor is passed once over the socket (``SCM_RIGHTS``) and again when it grows.
The sender copies buffers in, the receiver copies them out; nothing is named in /dev/shm,
so nothing can be left there, even after ``kill -9``. Reusing arenas matters: faulting in
fresh shared pages costs more than the copies.

A worker exits when its socket closes, when asked to, when its parent changes (polled
every 0.2 s) and, if started from the actor's main thread on Linux, through
``PR_SET_PDEATHSIG`` as soon as the actor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

import numpy as np

from plexa.core.ladder import stop_ladder
from plexa.errors import PlexaError, RemoteError

__all__ = ["WorkerPool"]

T = TypeVar("T")
R = TypeVar("R")

OOB_MIN = 64 * 1024
"""Buffers at least this large travel through shared memory, smaller ones in the pickle."""
_HEAD = struct.Struct("<qIQ")  # task id, number of out-of-band buffers, new arena size or 0
_STOP = -1
_POLL_S = 0.05
_GRACE_S = 0.5


def _shm_fd(size: int) -> int:
    """A descriptor of a new anonymous shared-memory file of ``size`` bytes."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("plxpool_", os.MFD_CLOEXEC)
    else:  # pragma: no cover - not Linux
        fd, path = tempfile.mkstemp(prefix="plxpool_", dir="/dev/shm")
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _unmap(arena: mmap.mmap | None) -> None:
    if arena is not None:
        with contextlib.suppress(BufferError):  # a view is alive: the GC unmaps it later
            arena.close()


class _Channel:
    """One end of a worker's socket pair and its two arenas: ``out`` written here, ``into``
    written by the peer. A message goes only after the previous one in the same direction
    was read (a worker holds one task at a time), so arenas are overwritten without more
    handshake. A message that does not fit makes the writer pass a larger arena along."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sock = socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        self.out: mmap.mmap | None = None
        self.into: mmap.mmap | None = None

    def send(self, tid: int, obj: object) -> tuple[int, int]:
        """Send ``obj`` tagged ``tid``; returns (bytes through the socket, bytes through shm)."""
        views: list[memoryview] = []

        def keep_in_band(buf: pickle.PickleBuffer) -> bool:
            with contextlib.suppress(BufferError):
                if (raw := buf.raw()).nbytes >= OOB_MIN:
                    views.append(raw)
                    return False
            return True

        stream = pickle.dumps(obj, protocol=5, buffer_callback=keep_in_band)
        spans: list[int] = []
        end = 0
        for view in views:
            end += -end % 64
            spans += (end, view.nbytes)
            end += view.nbytes
        cap = len(self.out) if self.out is not None else 0
        grow = 0 if end <= cap else -(-max(end, 2 * cap) // (1 << 20)) << 20
        fd = _shm_fd(grow) if grow else -1
        try:
            if grow:
                _unmap(self.out)
                self.out = mmap.mmap(fd, grow)
            for view, offset in zip(views, spans[::2], strict=True):
                assert self.out is not None
                self.out[offset : offset + view.nbytes] = view
            head = _HEAD.pack(tid, len(views), grow) + struct.pack(f"<{len(spans)}Q", *spans)
            self.conn.send_bytes(head + stream)
            if grow:
                socket.send_fds(self.sock, [b"F"], [fd])
        finally:
            if grow:
                os.close(fd)
        return len(head) + len(stream) + (grow > 0), end

    def recv(self) -> tuple[int, memoryview, list[Any], int, int]:
        """One message: tag, pickle stream, out-of-band buffers (copied out of the arena),
        bytes through the socket, bytes through shm."""
        data = self.conn.recv_bytes()
        tid, count, grow = _HEAD.unpack_from(data)
        spans = struct.unpack_from(f"<{2 * count}Q", data, _HEAD.size)
        if grow:
            _, fds, _, _ = socket.recv_fds(self.sock, 1, 1)
            if not fds:
                raise EOFError("the peer closed the connection")
            try:
                arena = mmap.mmap(fds[0], grow)
            finally:
                os.close(fds[0])
            _unmap(self.into)
            self.into = arena
        into, pairs = self.into, zip(spans[::2], spans[1::2], strict=True)
        buffers = [np.frombuffer(into, np.uint8, n, o).copy() for o, n in pairs] if into else []
        stream = memoryview(data)[_HEAD.size + 16 * count :]
        return tid, stream, buffers, len(data) + (grow > 0), sum(spans[1::2])

    def close(self) -> None:
        self.sock.close()
        self.conn.close()
        _unmap(self.out)
        _unmap(self.into)
        self.out = self.into = None


def _describe(exc: BaseException) -> tuple[BaseException | None, str, str, str]:
    """(``exc`` if it survives pickling else None, its type's name, message, traceback)."""
    keep: BaseException | None = exc
    try:
        pickle.loads(pickle.dumps(exc, protocol=5))
    except Exception:
        keep = None
    cls = type(exc)
    kind = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return keep, kind, str(exc), "".join(traceback.format_exception(exc))


def _run_task(stream: memoryview, buffers: list[Any]) -> tuple[bool, Any]:
    try:
        fn, item = pickle.loads(stream, buffers=buffers)
        return True, fn(item)
    except Exception as exc:
        return False, _describe(exc)


def _watch_parent(ppid: int) -> None:
    while os.getppid() == ppid:
        time.sleep(0.2)
    os._exit(1)


def _worker_main(conn: Connection, ppid: int, deathsig: bool) -> None:
    """A worker process: run tasks until asked to stop or the actor goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the actor's business
    if deathsig and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # PR_SET_PDEATHSIG
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != ppid:
        return
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    chan = _Channel(conn)
    while True:
        try:
            tid, stream, buffers, _, _ = chan.recv()
        except (EOFError, OSError):
            return
        if tid == _STOP:
            return
        reply = _run_task(stream, buffers)
        del stream, buffers
        try:
            chan.send(tid, reply)
        except OSError:
            return
        except Exception as exc:  # the result cannot be pickled
            chan.send(tid, (False, _describe(exc)))
        del reply


class _Worker:
    """One worker process, the parent's end of its channel and the task it holds."""

    def __init__(self, ctx: Any) -> None:
        ours, theirs = ctx.Pipe(duplex=True)
        # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: main only.
        deathsig = threading.current_thread() is threading.main_thread()
        args = (theirs, os.getpid(), deathsig)
        self.proc: Any = ctx.Process(target=_worker_main, args=args, name="plexa-pool", daemon=True)
        self.proc.start()
        theirs.close()
        self.chan = _Channel(ours)
        self.conn: Connection = ours
        self.task: int | None = None

    @property
    def label(self) -> str:
        """``worker PID`` (for the stop ladder)."""
        return f"worker {self.proc.pid}"

    def alive(self) -> bool:
        """True until the process has exited (and is reaped)."""
        return bool(self.proc.is_alive())

    def send(self, sig: signal.Signals) -> None:
        """Deliver ``sig`` to the worker."""
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """Terminate, then kill if needed (the stop ladder); reap it and close the channel."""
        stop_ladder([self], grace=1.0, kill_grace=1.0, wait=_join_wait(self))
        self.chan.close()


def _join_wait(*workers: _Worker) -> Callable[[float], None]:
    """Wait for workers by joining them (reaps them too)."""

    def wait(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for worker in workers:
            worker.proc.join(max(0.0, deadline - time.monotonic()))

    return wait


class WorkerPool:
    """Worker processes running ``fn(item)`` for :meth:`imap` and :meth:`map`.

    ``fn`` must be picklable by reference: a function defined at module level in an
    importable module (not a lambda, a closure or a local function). Items and results are
    pickled; numpy arrays of 64 KiB or more travel through shared memory, not the sockets.
    ``safe_point`` is called between results and at least every 50 ms while waiting: while
    it blocks (pause) no new task is handed out; when it raises, the work in flight is
    cancelled and the exception propagates. At most ``window`` items (default ``2 * size``)
    are taken from ``items`` and not yet yielded. One ``imap`` runs at a time: starting
    another cancels the previous one. Not thread-safe. ``close()`` (or ``with``) stops it.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        safe_point: Callable[[], None] = lambda: None,
        window: int | None = None,
    ) -> None:
        self.size = (os.cpu_count() or 1) if size is None else size
        self.window = 2 * self.size if window is None else window
        if self.size < 1 or self.window < 1:
            raise ValueError(f"size and window must be positive (got {size}, {window})")
        self._safe_point = safe_point
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._owner: object | None = None  # the running imap
        self._closed = False
        self.stats = {"tasks": 0, "pipe_bytes": 0, "shm_bytes": 0}
        """Tasks handed out, and bytes moved through the sockets and through shared memory."""

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers started and not stopped."""
        return [w.proc.pid for w in self._workers]

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(x) for x in items]``, computed by the workers."""
        return list(self.imap(fn, items))

    def imap(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        ordered: bool = True,
        enumerated: bool = False,
    ) -> Iterator[Any]:
        """Results of ``fn`` over ``items`` (taken lazily; may be endless) as they complete.

        In input order when ``ordered``, else in completion order; ``enumerated`` yields
        ``(index, result)``. An exception raised by ``fn`` is raised here (the same type
        when it can be pickled, else :class:`~plexa.errors.RemoteError`) with a
        ``RemoteError`` carrying the worker's traceback as its ``__cause__``; the rest is
        cancelled. A worker that dies raises :class:`~plexa.errors.PlexaError`. Resuming an
        imap cancelled by a later call or by :meth:`close` raises ``RuntimeError``.
        """
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        try:
            pickle.dumps(fn, protocol=5)
        except Exception as exc:
            raise TypeError(
                f"{fn!r} cannot be sent to a worker: use a module-level function"
            ) from exc
        return self._iterate(fn, iter(items), ordered, enumerated)

    def _iterate(
        self, fn: Any, items: Iterator[Any], ordered: bool, enumerated: bool
    ) -> Iterator[Any]:
        token = object()
        if self._owner is not None:
            self._cancel()
        self._owner = token
        waiting: deque[tuple[int, Any]] = deque()  # taken from items, not handed out yet
        done: dict[int, Any] = {}
        taken = given = 0
        exhausted = False
        try:
            while True:
                self._safe_point()
                if self._owner is not token:
                    raise RuntimeError("this imap was cancelled by a later call or by close()")
                while not exhausted and taken - given < self.window:
                    try:
                        waiting.append((taken, next(items)))
                        taken += 1
                    except StopIteration:
                        exhausted = True
                while waiting and (worker := self._idle()) is not None:
                    index, item = waiting.popleft()
                    self._hand(worker, index, (fn, item))
                key = given if ordered else next(iter(done), -1)
                if key in done:
                    given += 1
                    value = done.pop(key)
                    yield (key, value) if enumerated else value
                elif exhausted and given == taken:
                    return
                else:
                    self._collect(done, _POLL_S)
        finally:
            if self._owner is token:
                self._cancel()
                self._owner = None

    def _idle(self) -> _Worker | None:
        """An idle worker (started if there are fewer than ``size``), or None."""
        for worker in self._workers:
            if worker.task is None:
                if worker.proc.is_alive():
                    return worker
                self._drop(worker)
                return self._idle()
        if len(self._workers) < self.size:
            self._workers.append(_Worker(self._ctx))
            return self._workers[-1]
        return None

    def _hand(self, worker: _Worker, index: int, task: object) -> None:
        try:
            pipe, shm = worker.chan.send(index, task)
        except OSError:
            self._died(worker, index)
        worker.task = index
        self._count(1, pipe, shm)

    def _count(self, tasks: int, pipe: int, shm: int) -> None:
        self.stats["tasks"] += tasks
        self.stats["pipe_bytes"] += pipe
        self.stats["shm_bytes"] += shm

    def _collect(self, done: dict[int, Any], timeout: float) -> None:
        """Wait up to ``timeout`` for results and put them in ``done``, or raise."""
        busy = [w for w in self._workers if w.task is not None]
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
        for worker in busy:
            if worker.conn not in ready and worker.proc.sentinel not in ready:
                continue
            try:
                tid, stream, buffers, pipe, shm = worker.chan.recv()
            except (EOFError, OSError):
                self._died(worker, worker.task)
            worker.task = None
            self._count(0, pipe, shm)
            ok, value = pickle.loads(stream, buffers=buffers)
            if not ok:
                exc, kind, text, tb = value
                cause = RemoteError(f"{kind}: {text}" if text else kind, tb, kind)
                if isinstance(exc, BaseException):
                    raise exc from cause
                raise cause
            done[tid] = value

    def _died(self, worker: _Worker, task: int | None) -> Any:
        worker.proc.join(1.0)
        code = worker.proc.exitcode
        how = f"exited with code {code}"
        with contextlib.suppress(ValueError, TypeError):
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else how
        self._drop(worker)
        raise PlexaError(f"worker died: process {worker.proc.pid} {how} while running task {task}")

    def _drop(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)

    def _cancel(self) -> None:
        """Drop the work in flight: wait up to 0.5 s for busy workers, then terminate them."""
        deadline = time.monotonic() + _GRACE_S
        busy = [w for w in self._workers if w.task is not None]
        while busy and (left := deadline - time.monotonic()) > 0:
            ready = wait([w.conn for w in busy], left)
            for worker in [w for w in busy if w.conn in ready]:
                busy.remove(worker)
                try:
                    worker.chan.recv()  # the result is dropped
                    worker.task = None
                except (EOFError, OSError):
                    self._drop(worker)
        for worker in busy:
            self._drop(worker)

    def close(self) -> None:
        """Stop every worker: cancel, ask, wait up to 1 s, terminate, kill. Idempotent."""
        self._closed = True
        self._cancel()
        self._owner = None

        def ask(worker: Any) -> bool:
            with contextlib.suppress(OSError):
                worker.chan.send(_STOP, None)
                return True
            return False

        workers = list(self._workers)
        stop_ladder(workers, ask=ask, grace=1.0, kill_grace=1.0, wait=_join_wait(*workers))
        for worker in workers:
            worker.chan.close()
        self._workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
