"""The Ray actor that runs one plexa actor process on its node (see :mod:`plexa.launch.ray`).

Only the standard library and Ray are used here: this is what every Ray worker that hosts
an actor imports.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

from plexa.core.paths import RUN_DIR_ENV
from plexa.errors import PlexaError
from plexa.launch.base import signal_group

__all__ = ["OUTPUT_POLL_S", "ActorHost"]

OUTPUT_POLL_S = 1.0
"""How long a host holds an output request open when its actor writes nothing."""
AFTER_S = 60.0
"""How long a host waits for what its actor needs first (its node's agent)."""
RUN_DIR_ARG = 3
"""Where the run directory is in the actor's command (``python -c BOOT RUN_DIR ACTOR PID``)."""


class ActorHost:
    """The Ray actor that runs one plexa actor process and reports on it.

    Its methods run in a few threads (a threaded Ray actor): ``wait`` and ``output`` block
    while ``signal`` gets through. The child is started by a keeper thread that lives until
    the child exits, because the kernel's parent-death signal follows the thread that
    started a process, not the process.
    """

    def __init__(self) -> None:
        self._popen: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._exited = threading.Event()
        self._cond = threading.Condition()
        self._chunks: list[tuple[str, bytes]] = []
        self._open_streams = 0
        self._error = ""
        self._raylet = int(os.environ.get("RAY_RAYLET_PID") or os.getppid())

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        after: list[Any] | None = None,
        agent: tuple[Any, str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Start the actor process, once each of ``after`` (Ray references: its node's agent
        getting ready for it) is ready; an answer that is a dict is more environment (the
        agent's run directory and Zenoh router). Returns its pid and this node's id and
        address. ``agent``: the node's agent, the run and the actor, told the pid."""
        import ray

        if after:
            try:
                for answer in ray.get(after, timeout=AFTER_S):
                    if isinstance(answer, dict):
                        env = {**env, **answer}
            except Exception as exc:
                self._error = f"its node's plexa agent is not ready: {exc}"
                self._started.set()
                self._exited.set()
                raise PlexaError(f"could not start the actor process: {self._error}") from exc
        full = dict(os.environ)
        full.update(env)
        argv = [env[RUN_DIR_ENV] if i == RUN_DIR_ARG else a for i, a in enumerate(argv)]
        keeper = threading.Thread(target=self._keep, args=(argv, full), daemon=True)
        keeper.start()
        self._started.wait()
        if self._popen is None:
            raise PlexaError(f"could not start the actor process: {self._error}")
        if agent is not None:
            handle, run_id, actor = agent
            handle.started.remote(run_id, actor, self._popen.pid)

        ctx = ray.get_runtime_context()
        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return self._popen.pid, ctx.get_node_id(), ip

    def _keep(self, argv: list[str], env: dict[str, str]) -> None:
        try:
            argv = [*argv[:-1], str(os.getpid())]  # the actor's parent is this host
            self._popen = popen = subprocess.Popen(
                argv,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            self._error = str(exc)
            self._started.set()
            self._exited.set()
            return
        self._open_streams = 2
        for stream, label in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            threading.Thread(target=self._read, args=(stream, label), daemon=True).start()
        self._started.set()
        popen.wait()
        self._exited.set()

    def _read(self, stream: Any, label: str) -> None:
        fd = stream.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self._cond:
                if data:
                    self._chunks.append((label, data))
                else:
                    self._open_streams -= 1
                self._cond.notify_all()
            if not data:
                stream.close()
                return

    def wait(self) -> int:
        """Block until the actor process exits; its exit code (negative: the signal)."""
        self._exited.wait()
        return self._popen.returncode if self._popen is not None else 127

    def node_up(self) -> bool:
        """Whether this node's raylet still runs. A Ray worker whose raylet died SIGKILLs its
        children as it exits, and their exit code may reach the nexus before the worker's
        death does: the nexus asks this before it believes such an exit."""
        try:
            with open(f"/proc/{self._raylet}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")  # a killed raylet not yet reaped is a zombie

    def output(self) -> list[tuple[str, bytes]] | None:
        """What the actor wrote since the last call (waits up to a second for something);
        None once both its streams are closed and everything was handed over."""
        with self._cond:
            self._cond.wait_for(lambda: self._chunks or not self._open_streams, OUTPUT_POLL_S)
            chunks, self._chunks = self._chunks, []
            if not chunks and not self._open_streams and self._started.is_set():
                return None
            return chunks

    def signal(self, signum: int) -> None:
        """Signal the actor's process group (the actor and what stayed in its group)."""
        popen = self._popen
        if popen is not None and popen.returncode is None:
            signal_group(popen.pid, signum)
