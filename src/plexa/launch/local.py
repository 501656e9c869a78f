"""Actor processes on this machine: one ``plexa.runtime.process`` each.

Each actor runs in its own session (so its process group can be signalled as a whole), with
its output on pipes the nexus merges into the run's log, and two environment variables
(``PLEXA_RUN_DIR``, ``PLEXA_ACTOR``) that every process it starts inherits: that mark is how
the nexus and ``plexa cleanup`` find an actor's children that left its process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from plexa.core.paths import ENV_ACTOR, RUN_DIR_ENV, SYS_PATH_ENV
from plexa.errors import PlexaError
from plexa.launch.base import ActorProcess, LaunchRequest, signal_group
from plexa.launch.zygote import ForkServer

__all__ = [
    "FORK_SERVER_ENV",
    "LocalLauncher",
    "LocalProcess",
    "marked_processes",
    "sweep",
]

log = logging.getLogger("plexa.nexus")

FORK_SERVER_ENV = "PLEXA_FORK_SERVER"
"""``0``: start every local actor as a fresh interpreter, without the fork server."""

BOOT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # die with the nexus, even while importing\n"
    "if os.getppid() != int(sys.argv[-1]):\n"
    "    os._exit(3)\n"
    "import runpy\n"
    "runpy.run_module('plexa.runtime.process', run_name='__main__', alter_sys=True)\n"
)
"""What an actor process runs first: it asks to die with the nexus before it imports anything
heavy (a nexus killed while its actors import must not wait for them to finish), then runs
:mod:`plexa.runtime.process` as ``__main__``. Its command line still names that module."""


class LocalProcess:
    """A local actor process (a :class:`plexa.launch.base.ActorProcess`)."""

    def __init__(self, label: str, popen: subprocess.Popen[bytes]) -> None:
        self._label = label
        self.popen = popen

    @property
    def label(self) -> str:
        """The actor's name."""
        return self._label

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """True until the process has exited (and is reaped)."""
        return self.popen.poll() is None

    def exit_code(self) -> int | None:
        """The exit code (negative: the signal), or None while it runs."""
        return self.popen.poll()

    def send(self, sig: signal.Signals) -> None:
        """Signal the actor's process group (the actor and the children that stayed in it)."""
        if self.popen.returncode is None:
            signal_group(self.popen.pid, sig)

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """The read ends of the actor's stdout and stderr pipes."""
        found = []
        for stream, label in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr")):
            if stream is not None:
                found.append((stream.fileno(), label))
        return found

    def close(self) -> None:
        """Close the pipes (after the process is gone and its output read)."""
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class LocalLauncher:
    """Starts actor processes on this machine (a :class:`plexa.launch.base.Launcher`).

    With ``fork_server`` (the default for local runs; ``PLEXA_FORK_SERVER=0`` turns it off),
    actors are forked from a warm per-run fork server (:mod:`plexa.launch.zygote`) instead of
    starting a fresh interpreter each; should the fork server fail, they are exec'd again.
    """

    def __init__(self, fork_server: bool = False, server: ForkServer | None = None) -> None:
        self.fork_server = fork_server and os.environ.get(FORK_SERVER_ENV, "1") != "0"
        self._server: ForkServer | None = server if self.fork_server else None
        """The fork server: started with the first actor, or already (``server``)."""
        if server is not None and self._server is None:
            server.close()

    def spawn(self, request: LaunchRequest) -> ActorProcess:
        """Start the actor (``plexa.runtime.process``); returns once its process exists."""
        env = dict(os.environ)
        env.update(request.env)
        env[RUN_DIR_ENV] = request.run_dir  # inherited by all it starts: the run's mark
        env[ENV_ACTOR] = request.actor
        env[SYS_PATH_ENV] = os.pathsep.join(request.import_path)  # never through a file
        args = [request.run_dir, request.actor, str(request.nexus_pid)]
        if self.fork_server:
            try:
                return self._forked(request, env, args)
            except (PlexaError, OSError) as exc:  # OSError: a full disk, no more processes
                self.fork_server = False
                log.warning("fork server: %s: actors start as fresh interpreters from now on", exc)
        popen = subprocess.Popen(
            [sys.executable, "-c", BOOT, request.run_dir, request.actor, str(request.nexus_pid)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for stream in (popen.stdout, popen.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
        return LocalProcess(request.actor, popen)

    def _forked(self, request: LaunchRequest, env: dict[str, str], args: list[str]) -> ActorProcess:
        if self._server is None:
            mark = {k: v for k, v in env.items() if k != ENV_ACTOR}  # the same for all
            err = Path(request.run_dir) / "fork-server.err"
            self._server = ForkServer(mark, err)
        return self._server.fork(request.actor, args, env)

    def close(self) -> None:
        """End the fork server, if there is one (every actor is gone)."""
        if self._server is not None:
            self._server.close()
            self._server = None


def marked_processes(run_dir: str, actor: str | None = None) -> Iterator[int]:
    """Pids of this user's processes that carry the mark of the run in ``run_dir`` (of one
    actor, or any): ``PLEXA_RUN_DIR`` (and ``PLEXA_ACTOR``) in their environment.

    Read from ``/proc/PID/environ``, which only the owner (or root) can read: another
    user's processes are never matched.
    """
    want = f"{RUN_DIR_ENV}={run_dir}".encode()
    who = f"{ENV_ACTOR}={actor}".encode() if actor is not None else None
    me = os.getuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != me:
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if want in env and (who is None or who in env):
            yield int(entry.name)


def sweep(run_dir: str, actor: str | None = None, *, spare: Sequence[int] = ()) -> list[int]:
    """SIGKILL every process marked with the run in ``run_dir`` (and ``actor``), but ``spare``.

    What an actor started and left behind (even in a new session) goes with it. Returns
    the pids signalled. The caller reaps its own children; others are init's.
    """
    killed = []
    me = os.getpid()
    for pid in marked_processes(run_dir, actor):
        if pid in spare or pid == me:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
