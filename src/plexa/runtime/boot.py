"""What makes an actor process a good citizen: it dies with its nexus, it takes what it
started down with it, and it leaves quickly.

Used by :mod:`plexa.runtime.process` at the start and the end of every actor process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["at_exit", "die_with_parent", "end_descendants", "exit_now", "on_sigterm"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def die_with_parent() -> None:
    """Ask the kernel to send SIGTERM when the nexus (our parent) dies, and to hand us the
    orphans of what we start (so that they can be ended with us)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)


def end_descendants() -> None:
    """SIGKILL and reap every process this actor started (user code's children, their
    children, even those that started a new session: we are their subreaper)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        found = _descendants()
        if found is not None and not found:
            return  # the usual case, known without psutil's scan of every process
        procs = psutil.Process().children(recursive=True)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=2)


def _descendants() -> list[int] | None:
    """Pids below this process, read from ``/proc/PID/task/*/children`` (a few reads, where
    psutil reads every process's ``stat``: ~3 ms, 50 actors quitting at once pay it 50
    times); None where the kernel does not provide those files."""
    found: list[int] = []
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == os.getpid():
                return None
            continue  # gone meanwhile
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    kids = [int(p) for p in fh.read().split()]
            except FileNotFoundError:
                if pid == os.getpid():
                    return None
                continue
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def on_sigterm(signum: int, frame: object) -> None:
    """The first SIGTERM ends the process through its teardown; a second one (the kernel's
    parent-death signal can come twice) must not cut that teardown short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


_at_exit: list[Callable[[], object]] = []


def at_exit(fn: Callable[[], object]) -> None:
    """Call ``fn`` when this actor process leaves, also after SIGTERM (its nexus died): the
    process ends with ``os._exit`` (:func:`exit_now`), so Python's ``atexit`` never runs.
    ``fn`` runs after the ports are closed: it must not need them (the recorder finishes
    its file)."""
    _at_exit.append(fn)


def exit_now(code: int) -> None:
    """Run the :func:`at_exit` calls, flush what user code wrote, then leave without the
    interpreter's slow teardown (its finalizers would run after everything the run owns
    is already released)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late one must not cut these short
    while _at_exit:
        with contextlib.suppress(Exception):
            _at_exit.pop()()
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
