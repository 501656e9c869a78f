"""Why an actor process on Ray is gone: its node was lost, or it crashed or was killed.

Two things race when a node leaves the cluster. The hosts on it exit once their raylet is
gone, and a Ray worker that exits SIGKILLs its children first: the actor's exit code
(``-SIGKILL``) may reach the nexus before the host's death does, and the GCS may count the
node alive for a while still (until its health checks fail). So an exit by a signal the
host did not send is not taken at its word: the host is asked whether its raylet still
runs (:meth:`plexa.launch.ray_host.ActorHost.node_up`), and a host that died is judged by
Ray's death cause and the GCS's view of its node, with a grace. The nexus is never blocked:
:meth:`Inquest.settle` is polled until it has a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plexa.core.lifecycle import FailureKind

__all__ = ["NODE_GRACE_S", "PROBE_S", "Inquest"]

PROBE_S = 30.0
"""How long a host may take to say whether its node is up (then its exit code stands)."""
NODE_GRACE_S = 2.0
"""How long after a host's death the GCS may take to count its node dead."""
NODE_POLL_S = 0.2
"""How often the GCS is asked about the node meanwhile."""
NODE_DIED = "because its node has died"
"""Ray's death cause for an actor whose node died (in its ``ActorDiedError``)."""


@dataclass
class Inquest:
    """Finds out why the process of a Ray host on node ``node_id`` is gone."""

    code: int
    """The exit code the nexus will see (``-SIGKILL`` when the host died with it)."""
    node_id: str | None
    """The hex id of the host's node (None: it was never placed)."""
    node: str
    """The node in words, for the message ("": not known)."""
    probe: Any = None
    """The host's answer to ``node_up`` in flight (when the host reported the exit)."""
    error: BaseException | None = None
    """Why Ray says the host is gone (once it is)."""
    failure: tuple[FailureKind, str] | None = None
    """The verdict, once :meth:`settle` returned True (None: the exit code says it all)."""
    since: float = field(default_factory=time.monotonic)
    _host_gone: float = 0.0
    _next_ask: float = 0.0

    def settle(self, ray: Any, node_alive: Callable[[str], bool]) -> bool:
        """True once the cause is known (in :attr:`failure`); never blocks for long."""
        now = time.monotonic()
        if self.error is None and self.probe is not None:
            ready, _ = ray.wait([self.probe], timeout=0)
            if not ready:
                if self._node_dead(node_alive, now):
                    return self._lost()
                return now - self.since >= PROBE_S  # no answer in time: the exit code stands
            try:
                up = bool(ray.get(self.probe))
            except Exception as exc:  # the host died since it reported the exit
                self.error = exc
            else:
                return True if up else self._lost()
        if self._host_gone == 0.0:
            self._host_gone = now
        if NODE_DIED in str(self.error) or self._node_dead(node_alive, now):
            return self._lost()
        if self.node_id is not None and now - self._host_gone < NODE_GRACE_S:
            return False
        text = str(self.error).strip()
        first = text.splitlines()[0] if text else type(self.error).__name__
        self.failure = (FailureKind.CRASHED, f"its Ray actor died: {first}")
        return True

    def _node_dead(self, node_alive: Callable[[str], bool], now: float) -> bool:
        if self.node_id is None or now < self._next_ask:
            return False
        self._next_ask = now + NODE_POLL_S
        return not node_alive(self.node_id)

    def _lost(self) -> bool:
        node = f"its Ray node {self.node}" if self.node else "its Ray node"
        self.failure = (FailureKind.HOST_LOST, f"{node} was lost")
        return True
