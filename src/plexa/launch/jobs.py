"""Job processes on this machine: ``python -m MODULE --guid GUID --port PORT``.

Like an actor process, a job runs in its own session (its process group is signalled as a
whole), carries the run's mark in its environment (``PLEXA_RUN_DIR``: ``plexa cleanup``
finds it after the nexus died), dies with the nexus (``PR_SET_PDEATHSIG``), and has its
output on pipes the nexus merges into the run's log. Its standard input is a pipe that
carries its configuration; :class:`ConfigFeed` tells when the job has read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plexa.core.paths import ENV_ACTOR, RUN_DIR_ENV
from plexa.launch.local import LocalProcess

__all__ = ["ConfigFeed", "JobProcess", "JobRequest", "free_port", "spawn_job"]


@dataclass(frozen=True)
class JobRequest:
    """Everything needed to start one job process."""

    run_dir: str
    name: str
    module: str
    guid: str
    port: int
    args: tuple[str, ...] = ()
    import_path: tuple[str, ...] = ()
    """Folders put first on the job's ``PYTHONPATH`` (the pipeline file's folder)."""


def free_port(held: Sequence[int] = (), host: str = "127.0.0.1") -> int:
    """A TCP port the OS assigns now and that is not in ``held`` (the run's other jobs')."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in held:
            return port
    raise OSError("no free TCP port found that no job holds")  # pragma: no cover


def _die_with_nexus() -> None:  # runs in the child between fork and exec
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))


class JobProcess(LocalProcess):
    """A job's process: the actor handle's signals and pipes, plus its stdin."""

    def __init__(self, label: str, popen: subprocess.Popen[bytes], feed: ConfigFeed) -> None:
        super().__init__(label, popen)
        self.feed = feed

    def close(self) -> None:
        """Close its pipes (after it is gone)."""
        self.feed.close()
        super().close()


def spawn_job(request: JobRequest, config: Any) -> JobProcess:
    """Start the job; its ``config`` is written to its stdin as :class:`ConfigFeed` allows."""
    env = dict(os.environ)
    env[RUN_DIR_ENV] = request.run_dir
    env[ENV_ACTOR] = f"job:{request.name}"
    path = [*request.import_path, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    popen = subprocess.Popen(
        [sys.executable, "-m", request.module, "--guid", request.guid,
         "--port", str(request.port), *request.args],
        start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_nexus,
    )  # fmt: skip
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        assert stream is not None
        os.set_blocking(stream.fileno(), False)
    assert popen.stdin is not None
    line = json.dumps(config, separators=(",", ":")).encode() + b"\n"
    return JobProcess(request.name, popen, ConfigFeed(popen.stdin, line))


class ConfigFeed:
    """Writes one configuration line into a job's stdin pipe without ever blocking, and
    tells when the job has read all of it (the pipe is empty: ``FIONREAD`` is 0)."""

    def __init__(self, stdin: Any, data: bytes) -> None:
        self._stdin = stdin
        self._left = memoryview(data)
        self.done = False
        """The job has read the whole configuration (then its stdin is closed)."""

    def pump(self) -> bool:
        """Write what fits; True once the job has read everything (call every turn)."""
        if self.done or self._stdin.closed:
            return self.done
        fd = self._stdin.fileno()
        try:
            while self._left:
                written = os.write(fd, self._left)
                self._left = self._left[written:]
        except BlockingIOError:
            return False
        except BrokenPipeError:  # the job is gone (its exit is seen elsewhere)
            self.close()
            return False
        unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        if unread == 0:
            self.done = True
            self.close()
        return self.done

    def close(self) -> None:
        """Close the job's stdin (it sees the end of its input)."""
        with contextlib.suppress(OSError):
            self._stdin.close()
