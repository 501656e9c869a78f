"""The plexa agent of one Ray node of a run (see :mod:`plexa.launch.ray`), and the launcher
choice that hands it to the Ray launcher (the launch layer cannot import the agent).

A Ray node other than the nexus's own is taken to be another machine: it cannot see the
nexus's run directory (spec, control sockets), its shared-memory counters and object store,
or its checkpoints. So each such node that holds actors of the run gets a :class:`NodeAgent`:
a small Ray actor (no CPU reserved, pinned to the node, owned by the nexus) that runs the
very agent of ``plexa agent`` (:class:`plexa.nexus.agent.Agent`) for this run. The agent
makes the run's directory, counters and store on the node, runs the node's Zenoh router
(connected to the nexus's, :class:`plexa.launch.ray_routers.Hub`, over the run's mutual
TLS), relays the actors' control frames, counters and checkpoints to the nexus, and removes
its files when the run ends or its nexus is gone, as it does on an agent's host
(``docs/hosts.md``).

The actor processes themselves are started by their own Ray actors (:mod:`plexa.launch.ray_host`,
which reserve their resources and report their fate to the nexus): before one starts, its
host asks the node's agent to :meth:`NodeAgent.prepare` it, and starts it against the
agent's run directory and Zenoh router.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any

from plexa.core.spec import PipelineSpec
from plexa.launch import choose
from plexa.launch.base import Launcher
from plexa.launch.zygote import ForkServer

__all__ = ["PREPARE_S", "NodeAgent", "default_launcher"]

PREPARE_S = 30.0
"""How long a node's agent may take to reach the nexus before its actors' start fails."""


class NodeAgent:
    """The Ray actor that runs one node's plexa agent for one run."""

    def __init__(self, scope: str, hub: str, pems: dict[str, bytes], env: dict[str, str]) -> None:
        from plexa.core.paths import secure_root, write_private
        from plexa.data.zenoh_session import TlsFiles, ZenohSettings
        from plexa.nexus.agent import Agent

        os.environ.update(env)  # the run's PLEXA_* settings (runtime and data folders)
        self.root = secure_root() / f"agent-{scope}"  # the agent's folder: cleanup knows it
        tls = self.root / "tls"
        tls.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = {}
        for role, pem in pems.items():  # the node's certificate, made by the nexus for the run
            write_private(tls / f"{role}.pem", pem)
            files[role] = str(tls / f"{role}.pem")
        self.agent = Agent(ZenohSettings(connect=(hub,), tls=TlsFiles(**files)), scope)
        self._stop = threading.Event()
        self._loop = threading.Thread(
            target=self.agent.serve, kwargs={"until": self._stop.is_set}, name="plexa-agent"
        )
        self._loop.daemon = True
        self._loop.start()

    def prepare(
        self, run_id: str, actor: str, rows: dict[str, bytes], state: bytes
    ) -> dict[str, str]:
        """Ready this node for a process of ``actor`` (counters ``rows`` and checkpoint
        ``state`` as the nexus holds them); the environment it needs here (its run
        directory, its Zenoh router). Waits until the agent reached the nexus and joined."""
        deadline = time.monotonic() + PREPARE_S
        session: Any = self.agent.session
        while not list(session.info.routers_zid()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the node's agent did not reach the nexus in {PREPARE_S} s")
            time.sleep(0.01)
        return self.agent.prepare(run_id, actor, rows, state, deadline - time.monotonic())

    def started(self, run_id: str, actor: str, pid: int) -> None:
        """``actor``'s process runs as ``pid`` (its host says so): its usage is reported."""
        self.agent.started(run_id, actor, pid)

    def close(self) -> bool:
        """End the run here (its files go) and leave."""
        self._stop.set()
        self._loop.join(timeout=5.0)
        self.agent.close()
        shutil.rmtree(self.root, ignore_errors=True)
        return True


def default_launcher(spec: PipelineSpec, fork_server: ForkServer | None = None) -> Launcher:
    """:func:`plexa.launch.choose.default_launcher`, with :class:`NodeAgent` for the nodes of
    a Ray run that are not the nexus's."""
    return choose.default_launcher(spec, fork_server, node_agent=NodeAgent)
