"""Helpers for tests of pipelines across hosts: agents as real ``plexa agent`` processes (on
loopback, or inside a network namespace), and specs with ``hosts:``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from plexa.core.config import loads
from plexa.core.spec import HostSpec, PipelineSpec

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AgentProc:
    """A ``plexa agent`` process."""

    def __init__(
        self,
        scope: str,
        endpoint: str,
        *,
        key_file: Path | None = None,
        ns: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.scope, self.endpoint = scope, endpoint
        wrap = ["ip", "netns", "exec", ns] if ns else []
        argv = [*wrap, sys.executable, "-m", "plexa", "agent", scope, "--listen", endpoint]
        if endpoint.startswith("tcp/"):
            argv.append("--insecure")
        if key_file is not None:
            argv += ["--key-file", str(key_file)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        self.proc = subprocess.Popen(
            [*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise AssertionError(line + (self.proc.stderr.read() if self.proc.stderr else ""))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> str:
        """SIGTERM, wait; returns its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def placed(
    text: str, hosts: dict[str, str], where: dict[str, str], **host_options: object
) -> PipelineSpec:
    """The pipeline in ``text`` with ``hosts`` (scope -> endpoint) and actors placed as
    ``where`` says (actor -> scope)."""
    spec = loads(text)
    actors = dict(spec.actors)
    for actor, scope in where.items():
        actors[actor] = msgspec.structs.replace(actors[actor], host=scope)
    options = {"insecure": True, **host_options}  # plain tcp on loopback, in tests only
    specs = {
        scope: HostSpec(name=scope, endpoint=endpoint, **options)  # type: ignore[arg-type]
        for scope, endpoint in hosts.items()
    }
    return msgspec.structs.replace(spec, actors=actors, hosts=specs)
