"""A fork server for a run's local actors: one process per run imports plexa, numpy and the
actor runtime once, then forks each actor from that warm state on request.

Why: an actor process started with ``exec`` spends ~0.3-0.5 s of CPU importing the same
modules as every other actor before it can say hello; forked from the fork server it starts
in a few milliseconds. Starting, restarting and scaling to many actors get that much faster.

How it stays a good citizen, as :mod:`plexa.launch.local` explains for exec'd actors:

- The fork server is the nexus's child and dies with it (``PR_SET_PDEATHSIG``); each actor
  is the fork server's child and asks to die with *it*, so a killed nexus still takes every
  actor down.
- Each actor runs in its own session with its output on pipes the nexus created and passed
  over (``SCM_RIGHTS``), and the environment the nexus chose for it.
- The fork server is the subreaper of what actors start: when an actor dies, whatever it
  left behind is handed to the fork server, which kills it at once.
- The fork server carries the run's mark (``PLEXA_RUN_DIR``) in its environment, which
  ``/proc/PID/environ`` shows for every process forked from it: ``plexa cleanup`` finds them.

The fork server never imports user code and starts no thread, so forking it is safe. Only
the nexus's side (:class:`ForkServer`) and the server's loop (:func:`serve`) are here.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plexa.errors import PlexaError
from plexa.launch.base import signal_group

__all__ = ["BOOT", "ForkServer", "ForkedProcess", "serve"]

BOOT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # die with the nexus\n"
    "if os.getppid() != int(sys.argv[-1]):\n"
    "    os._exit(3)\n"
    "from plexa.launch.zygote import serve\n"
    "serve(int(sys.argv[1]))\n"
)
"""What the fork server runs (``python -c BOOT FD NEXUS_PID``)."""

PRELOAD = (
    "plexa.runtime.process",
    "plexa.core.actor",
    "plexa.core.config",  # resolving the actor's class
    "plexa.data.store",
    "numpy.random",
    "psutil",  # an actor's teardown
)
"""What the fork server imports once, so that no actor has to: everything the runtime itself
imports on the way to an actor's hello, setup and teardown (user code is never imported)."""
PR_SET_CHILD_SUBREAPER = 36
REPORT_WAIT_S = 0.2
"""How long the nexus waits for the fork server to report an exit it has seen happen."""
START_TIMEOUT = 60.0
"""How long the nexus waits for the fork server to answer its first request (it imports)."""


# ----- the nexus's side ---------------------------------------------------------------------
class ForkedProcess:
    """An actor forked by the fork server (a :class:`plexa.launch.base.ActorProcess`)."""

    def __init__(self, label: str, pid: int, server: ForkServer, out: int, err: int) -> None:
        self._label = label
        self._pid = pid
        self._server = server
        self._fds = [(out, "stdout"), (err, "stderr")]
        self._pidfd = os.pidfd_open(pid)  # still the server's unreaped child: the right one

    @property
    def label(self) -> str:
        """The actor's name."""
        return self._label

    @property
    def pid(self) -> int:
        """The process id."""
        return self._pid

    def exit_code(self) -> int | None:
        """The exit code (negative: the signal), or None while it runs."""
        return self._server.exit_code(self._pid, self._pidfd)

    def alive(self) -> bool:
        """True until the process has exited."""
        return self.exit_code() is None

    def send(self, sig: signal.Signals) -> None:
        """Signal the actor's process group (the actor and the children that stayed in it)."""
        if self.exit_code() is None:
            signal_group(self._pid, sig, lambda s: signal.pidfd_send_signal(self._pidfd, s))

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """The read ends of the actor's stdout and stderr pipes."""
        return list(self._fds)

    def close(self) -> None:
        """Close the pipes and the process handle (after it is gone and its output read)."""
        for fd in (*(fd for fd, _ in self._fds), self._pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


class ForkServer:
    """The nexus's handle on a run's fork server: start it, ask it for actors, hear of their
    exits, end it."""

    def __init__(self, env: Mapping[str, str], err_path: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(err_path, "ab") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", BOOT, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=dict(env),
            )
        theirs.close()
        self.sock = ours
        self.codes: dict[int, int] = {}
        self.err_path = err_path

    def fork(self, label: str, args: Sequence[str], env: Mapping[str, str]) -> ForkedProcess:
        """Fork an actor that runs ``plexa.runtime.process.main(args)`` (the last argument,
        its parent's pid, is the fork server's) in environment ``env``."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            request = json.dumps({"args": list(args), "env": dict(env)}).encode()
            try:
                socket.send_fds(self.sock, [request], [out_w, err_w])
            except OSError as exc:
                raise PlexaError(f"the fork server is gone ({exc})") from None
            pid = self._answer(START_TIMEOUT)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        return ForkedProcess(label, pid, self, out_r, err_r)

    def _answer(self, timeout: float) -> int:
        """Read until the fork server says which pid it forked (exit reports are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise PlexaError(f"the fork server did not answer within {timeout:g} s")
            reply = self._read()
            if reply is None:
                raise PlexaError(f"the fork server ended (its errors: {self.err_path})")
            if "pid" in reply:
                return int(reply["pid"])
            if "error" in reply:
                raise PlexaError(f"the fork server could not fork: {reply['error']}")

    def _read(self) -> dict[str, Any] | None:
        """One message (exit reports are recorded); None at end of stream."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return {}
        except OSError:
            return None
        if not data:
            return None
        reply: dict[str, Any] = json.loads(data)
        if "exit" in reply:
            self.codes[int(reply["exit"])] = int(reply["code"])
        return reply

    def exit_code(self, pid: int, pidfd: int) -> int | None:
        """``pid``'s exit code once the fork server has reported it (or it is gone with the
        fork server: then it counts as killed).

        The process's end shows on ``pidfd`` (and closes its pipes, which wakes the nexus)
        a moment before the fork server has reaped it and said so: then this waits up to
        :data:`REPORT_WAIT_S` for the report rather than a whole turn of the nexus's loop.
        """
        if pid in self.codes:
            return self.codes[pid]
        ended = bool(select.select([pidfd], [], [], 0)[0])
        deadline = time.monotonic() + (REPORT_WAIT_S if ended else 0.0)
        while pid not in self.codes and self.sock.fileno() >= 0:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                break
            if self._read() is None:
                self.sock.close()
        if pid not in self.codes and ended and self.sock.fileno() < 0:
            self.codes[pid] = -signal.SIGKILL  # nobody is left to tell us how it ended
        return self.codes.get(pid)

    def close(self, timeout: float = 5.0) -> None:
        """End the fork server (every actor has ended already)."""
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


# ----- the fork server ----------------------------------------------------------------------
def serve(fd: int) -> None:
    """The fork server's loop: fork an actor for each request on socket ``fd``, report each
    actor's exit, kill what dead actors left behind; end when the nexus closes the socket."""
    import ctypes
    import importlib

    for module in PRELOAD:  # the warm state every actor starts from
        with contextlib.suppress(ImportError):
            importlib.import_module(module)

    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the nexus's to handle
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(PR_SET_CHILD_SUBREAPER, 1)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    actors: set[int] = set()
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        if sock.fileno() in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                break
            try:
                pid = _fork(json.loads(data), fds, (sock.fileno(), wake_r, wake_w))
                actors.add(pid)
                answer: dict[str, Any] = {"pid": pid}
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for passed in fds:
                    os.close(passed)
            sock.send(json.dumps(answer).encode())
        _reap(sock, actors)
    os._exit(0)  # the actors notice (their parent-death signal)


def _reap(sock: socket.socket, actors: set[int]) -> None:
    """Report every actor that exited; kill and reap the orphans dead actors left to us."""
    ended = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in actors:
            actors.discard(pid)
            ended = True
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                sock.send(json.dumps({"exit": pid, "code": code}).encode())
    if ended:
        for orphan in _children() - actors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)


def _children() -> set[int]:
    """This process's children (orphans of dead actors among them)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as fh:
                found.update(int(p) for p in fh.read().split())
    return found


def _fork(request: dict[str, Any], fds: list[int], close: Sequence[int]) -> int:
    """Fork one actor; returns its pid (in the child: never returns)."""
    if len(fds) != 2:
        raise ValueError(f"expected 2 file descriptors (stdout, stderr), got {len(fds)}")
    args = [str(a) for a in request["args"]]
    env = {str(k): str(v) for k, v in request["env"].items()}
    parent = os.getpid()  # the child checks it is still its parent once it asked to die with it
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        for target, fd in ((0, null), (1, fds[0]), (2, fds[1])):
            os.dup2(fd, target)
        for fd in (null, *fds):
            os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["-c", *args]
        _reseed()
        from plexa.runtime.process import main

        code = main([*args[:-1], str(parent)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        from plexa.runtime.boot import exit_now

        exit_now(code)
    return 0  # pragma: no cover - exit_now does not return


def _reseed() -> None:
    """Forked actors must not share their random streams with each other."""
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
