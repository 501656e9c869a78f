"""The nexus's handle on one actor process run by a Ray host (see :mod:`plexa.launch.ray`).

A handle exists before its host does: the launcher creates the host once it has chosen a
node for the actor's group (:mod:`plexa.launch.ray_place`), which may be later, when a node
with room for the whole group joins. Until then the handle waits, ``created``, saying what
for, and asks the launcher again whenever the nexus looks at it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from plexa.core.lifecycle import FailureKind
from plexa.launch.ray_fate import Inquest

if TYPE_CHECKING:
    from plexa.launch.ray import RayLauncher

__all__ = ["RayProcess"]


def _ray() -> Any:
    import ray

    return ray


class RayProcess:
    """A plexa actor process run by a Ray actor (a :class:`plexa.launch.base.ActorProcess`)."""

    def __init__(self, label: str, launcher: RayLauncher) -> None:
        self._label = label
        self._launcher = launcher
        self.host: Any = None
        """The Ray actor handle (None until the actor's group has a node)."""
        self._start_ref: Any = None
        self._wait_ref: Any = None
        self._started: tuple[int, str, str] | None = None
        self._code: int | None = None
        self._failure: tuple[FailureKind, str] | None = None
        self._inquest: Inquest | None = None
        self._killed = False
        self._sent: set[int] = set()
        self.wants = "what it asks for"
        """The resources it asked for, in words."""
        self.group = ""
        """The group it belongs to (its ``host:`` in the run's spec)."""
        self.company = 0
        """How many other actors share its group (and wait with it for a node)."""
        self.target: str | None = None
        """The id of the node its host was pinned to (None until then)."""
        read_out, self._write_out = os.pipe()
        read_err, self._write_err = os.pipe()
        for fd in (read_out, read_err):
            os.set_blocking(fd, False)
        self._fds = [(read_out, "stdout"), (read_err, "stderr")]

    def bind(self, host: Any, start_ref: Any, node_id: str) -> None:
        """The host that runs it, pinned to node ``node_id``, and its ``start`` in flight."""
        self.host, self._start_ref, self.target = host, start_ref, node_id
        self._wait_ref = host.wait.remote()

    @property
    def label(self) -> str:
        """The actor's name."""
        return self._label

    def _start_info(self) -> tuple[int, str, str] | None:
        if self._started is None:
            if self.host is None:
                self._launcher.place_waiting()
                if self.host is None:
                    return None
            ray = _ray()
            ready, _ = ray.wait([self._start_ref], timeout=0)
            if ready:
                with contextlib.suppress(Exception):  # its failure shows in exit_code()
                    pid, node_id, ip = ray.get(self._start_ref)
                    self._started = (int(pid), str(node_id), str(ip))
        return self._started

    @property
    def pid(self) -> int:
        """The actor process's pid on its node (0 until Ray has placed and started it)."""
        info = self._start_info()
        return info[0] if info is not None else 0

    @property
    def node(self) -> str | None:
        """The Ray node it runs on, ``IP (id prefix)``; None until it is placed."""
        info = self._start_info()
        return f"{info[2]} ({info[1][:8]})" if info is not None else None

    @property
    def node_id(self) -> str | None:
        """The hex id of the Ray node it runs on; None until it is placed."""
        info = self._start_info()
        return info[1] if info is not None else None

    @property
    def waiting_for(self) -> str | None:
        """What the actor waits for before its process can start (None once it started)."""
        if self._start_info() is not None or self._code is not None:
            return None
        waits = f"waiting for a Ray node that offers {self.wants}"
        if not self.company:
            return waits
        return f"{waits}, with room for its group {self.group or '(every actor of the run)'}"

    def alive(self) -> bool:
        """True until the actor process (or its Ray actor) is gone."""
        return self.exit_code() is None

    def exit_code(self) -> int | None:
        """The process's exit code once it ended (negative: a signal); a Ray actor that died
        with it reads as SIGKILL, and :meth:`failure` says why. An exit that may be its
        node's loss is reported once that is settled (:mod:`plexa.launch.ray_fate`)."""
        if self._code is not None:
            return self._code
        if self.host is None:
            self._launcher.place_waiting()
            return None
        ray = _ray()
        if self._inquest is None:
            ready, _ = ray.wait([self._wait_ref], timeout=0)
            if not ready:
                return None
            try:
                code = int(ray.get(self._wait_ref))
            except Exception as exc:
                if self._killed:
                    return self._end(-signal.SIGKILL)
                node = self.node_id or self.target
                self._inquest = Inquest(-signal.SIGKILL, node, self.node or "", error=exc)
            else:
                if code >= 0 or self._killed or -code in self._sent:
                    return self._end(code)
                probe = self.host.node_up.remote()  # a signal nobody here sent: node lost?
                self._inquest = Inquest(code, self.node_id, self.node or "", probe=probe)
        if not self._inquest.settle(ray, self._launcher.node_alive):
            return None
        self._failure = self._inquest.failure
        if self._failure is not None and self._failure[0] is FailureKind.HOST_LOST:
            self._launcher.lost.add(self._inquest.node_id or "")
        return self._end(self._inquest.code)

    def _end(self, code: int) -> int:
        self._code = code
        self._inquest = None
        return code

    def failure(self) -> tuple[FailureKind, str] | None:
        """Why it is gone when its exit code cannot say (its Ray actor or node died)."""
        return self._failure

    def send(self, sig: signal.Signals) -> None:
        """Signal the actor process's group, through its host (a host that has not started
        it yet is ended instead; an actor still waiting for a node is simply over)."""
        if self._code is not None:
            return
        if self.host is None:
            self._killed = True
            self._launcher.forget(self)
            self.end_output()
            self._end(-signal.SIGKILL)
            return
        if self._start_info() is None:
            self._killed = True
            with contextlib.suppress(Exception):
                _ray().kill(self.host, no_restart=True)
            return
        self._sent.add(int(sig))
        self.host.signal.remote(int(sig))

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """Pipes carrying what the actor writes (relayed from its host)."""
        return self._fds

    def write(self, label: str, data: bytes) -> None:
        """Relay output to the pipe the nexus reads (the relay thread's)."""
        fd = self._write_out if label == "stdout" else self._write_err
        with contextlib.suppress(OSError):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def end_output(self) -> None:
        """No more output: the nexus reads end of file."""
        for fd in (self._write_out, self._write_err):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._write_out = self._write_err = -1

    def close(self) -> None:
        """Release the Ray actor and the pipes (after the process is gone)."""
        self._killed = True
        self._launcher.forget(self)
        if self.host is not None:
            with contextlib.suppress(Exception):
                _ray().kill(self.host, no_restart=True)
        self.end_output()
        for fd, _ in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
