"""An actor's links to actors on other hosts: its Zenoh session and ports.

The nexus (or the host's agent) tells an actor process how to reach its host's Zenoh router
in ``PLEXA_ZENOH`` (a unix socket in the run's private directory, so no network socket and
no credentials in the actor). A port whose links all stay on this host is an iceoryx2 port;
one whose links all leave it is a Zenoh port; a port with both gets one of each behind
:class:`FanOut` / :class:`FanIn`. Zenoh outputs batch small messages put back to back
(:mod:`plexa.data.zenoh_wire`); the actor process calls :meth:`HostLinks.flush` at every
safe point, so nothing is held once a handler call or step ends, or while the actor waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from plexa.core.spec import LinkSpec, PipelineSpec
from plexa.data.counters import Counters
from plexa.data.domain import Domain, Wake
from plexa.data.inputs import EMPTY, InputPort, make_sub
from plexa.data.links import LinkStatistics, OutputPort
from plexa.errors import ConfigError, ConfigIssue, Timeout, WouldBlock

__all__ = ["ENV", "FanIn", "FanOut", "HostLinks", "attach_ports"]

ENV = "PLEXA_ZENOH"


class HostLinks:
    """The Zenoh side of one actor process (opened only if a link of it leaves its host)."""

    def __init__(self, spec: PipelineSpec, actor: str, counters: Counters) -> None:
        self.spec = spec
        self.actor = actor
        self.counters = counters
        self.session: Any = None
        self.run = ""
        self.authenticated = False
        self.batch = True
        """Whether small messages may be held for a batch (then :meth:`flush` at every safe
        point is the runtime's duty; an async actor has none of its own, so never)."""
        self.outputs: list[Any] = []
        self._lock = threading.Lock()

    def needed(self) -> bool:
        """True when a link of this actor leaves its host."""
        links = (*self.spec.links_from(self.actor), *self.spec.links_to(self.actor))
        return any(self.spec.crosses_hosts(link) for link in links)

    def open(self) -> None:
        """Join the host's router, as ``PLEXA_ZENOH`` says."""
        from plexa.data.zenoh_session import ZenohSettings, open_session

        raw = os.environ.get(ENV)
        if not raw:
            raise ConfigError(
                [ConfigIssue("hosts", None, self.actor,
                             "a link leaves this host, but no Zenoh router was given")]
            )  # fmt: skip
        conf = json.loads(raw)
        settings = msgspec.convert(conf["settings"], ZenohSettings)
        self.run = conf["run"]
        self.authenticated = bool(conf.get("authenticated"))
        self.session = open_session(settings)

    def notifier(self, notify: Callable[[], None]) -> Callable[[], None]:
        """``notify`` made safe to call from Zenoh's threads."""

        def call() -> None:
            with self._lock:
                notify()

        return call

    def output(
        self, port: str, links: list[LinkSpec], idle_wait: Callable[[float], None],
        notify: Callable[[], None],
    ) -> Any:  # fmt: skip
        from plexa.data.zenoh_links import ZenohOutputPort

        out = ZenohOutputPort(
            self.session, self.run, self.actor, port, links,
            authenticated=self.authenticated,
            row=self.counters.output_row(f"{self.actor}.{port}"),
            idle_wait=idle_wait, notify=self.notifier(notify), batch=self.batch,
        )  # fmt: skip
        self.outputs.append(out)
        return out

    def flush(self) -> None:
        """Send what every Zenoh output holds for a batch (at each safe point: so at the end
        of every handler call and step, and before every wait)."""
        for out in self.outputs:
            out.flush()

    def input(
        self, port: str, links: list[LinkSpec], idle_wait: Callable[[float], None],
        notify: Callable[[], None],
    ) -> Any:  # fmt: skip
        from plexa.data.zenoh_inputs import ZenohInputPort

        return ZenohInputPort(
            self.session, self.run, self.actor, port, links,
            authenticated=self.authenticated,
            rows={link.name: self.counters.link_row(link.name) for link in links},
            idle_wait=idle_wait, notify=self.notifier(notify),
        )  # fmt: skip

    def close(self) -> None:
        """Close the session (after every port)."""
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.close()
            self.session = None


class FanOut:
    """An output port with links on this host and links to others."""

    def __init__(self, local: Any, remote: Any) -> None:
        self.local = local
        self.remote = remote
        self.name = local.name

    @property
    def sent(self) -> int:
        """Messages sent (by the local side: both count the same)."""
        return int(self.local.sent)

    def put(self, obj: object, timeout: float | None = None) -> None:
        """Send ``obj`` on both sides (waiting for room on each)."""
        self.local.put(obj, timeout)
        self.remote.put(obj, timeout)

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` on both sides, or raise :class:`WouldBlock` if one has no room."""
        self.local.put_nowait(obj)
        self.remote.put_nowait(obj)

    @contextlib.contextmanager
    def loan(self, shape: Any, dtype: Any = None) -> Iterator[Any]:
        """An array written in place for the remote side, copied to the local one."""
        with self.remote.loan(shape, dtype) as array:
            yield array
            self.local.put(array)

    def close(self) -> None:
        """Close both sides."""
        self.local.close()
        self.remote.close()


class FanIn:
    """An input port fed by links on this host and links from others (taken in turn)."""

    def __init__(self, local: Any, remote: Any, idle_wait: Callable[[float], None]) -> None:
        self.ports = (local, remote)
        self.name = local.name
        self.actor = local.actor
        self._next = 0
        self._idle_wait = idle_wait

    def take(self) -> Any:
        """The next message from either side, or :data:`EMPTY`."""
        for i in range(2):
            obj = self.ports[(self._next + i) % 2].take()
            if obj is not EMPTY:
                self._next = (self._next + i + 1) % 2
                return obj
        return EMPTY

    def take_stamped(self) -> Any:
        """``(message, sequence number, time)`` from either side, or :data:`EMPTY`."""
        for i in range(2):
            got = self.ports[(self._next + i) % 2].take_stamped()
            if got is not EMPTY:
                self._next = (self._next + i + 1) % 2
                return got
        return EMPTY

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a wake-up of the actor."""
        self._idle_wait(timeout)

    def has_pending(self) -> bool:
        """True when either side has a message."""
        return any(port.has_pending() for port in self.ports)

    def discard(self) -> int:
        """Drop what both sides hold."""
        return sum(port.discard() for port in self.ports)

    def get_nowait(self) -> Any:
        """The next message, or :class:`WouldBlock`."""
        obj = self.take()
        if obj is EMPTY:
            raise WouldBlock(f"input {self.actor}.{self.name} is empty")
        return obj

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` s (a safe point while waiting)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            obj = self.take()
            if obj is not EMPTY:
                return obj
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"input {self.actor}.{self.name}: nothing within {timeout} s")
            self._idle_wait(min(left, 0.1))

    def statistics(self) -> dict[str, LinkStatistics]:
        """Per-link counts of both sides."""
        return {**self.ports[0].statistics(), **self.ports[1].statistics()}

    def close(self) -> None:
        """Close both sides."""
        for port in self.ports:
            port.close()


class _Unlinked:
    """An output with no connection: ``put`` discards."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0

    def put(self, obj: object, timeout: float | None = None) -> None:
        """Discard ``obj``: nothing is connected."""

    def put_nowait(self, obj: object) -> None:
        """Discard ``obj``: nothing is connected."""

    @contextlib.contextmanager
    def loan(self, shape: Any, dtype: Any = None) -> Iterator[Any]:
        """A private array: nothing is connected, so nothing is sent."""
        import numpy as np

        yield np.empty(shape, dtype or np.uint8)

    def close(self) -> None:
        """Nothing to release."""


def attach_ports(
    spec: PipelineSpec,
    actor: str,
    domain: Domain,
    counters: Counters,
    wake: Wake,
    idle_wait: Callable[[float], None],
    batch: bool = True,
) -> tuple[HostLinks | None, dict[str, Any], dict[str, Any]]:
    """Every port of ``actor``: iceoryx2 for links on this host, Zenoh for the others.
    Returns the Zenoh side (None if no link leaves the host), the inputs and the outputs.
    ``batch``: Zenoh outputs may batch small messages (see :attr:`HostLinks.batch`)."""
    hosts = HostLinks(spec, actor, counters)
    hosts.batch = batch
    opened = hosts.needed()
    if opened:
        hosts.open()
    wake_self = wake.notifier(actor).notify
    crosses = spec.crosses_hosts
    aspec = spec.actors[actor]
    outputs: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for port in aspec.outputs:
        links = [lk for lk in spec.links_from(actor) if lk.src_port == port]
        here = [lk for lk in links if not crosses(lk)]
        away = [lk for lk in links if crosses(lk)]
        local: Any = None
        if here:
            service = domain.output_service(spec, f"{actor}.{port}")
            local = OutputPort(port, actor, here, service, counters, wake, idle_wait)
        remote = hosts.output(port, away, idle_wait, wake_self) if away else None
        if local is not None and remote is not None:
            outputs[port] = FanOut(local, remote)
        else:
            outputs[port] = local or remote or _Unlinked(port)
    for port in aspec.inputs:
        links = [lk for lk in spec.links_to(actor) if lk.dst_port == port]
        here = [lk for lk in links if not crosses(lk)]
        away = [lk for lk in links if crosses(lk)]
        subs = [make_sub(lk, domain, spec, counters, wake) for lk in here]
        inport: Any = InputPort(port, actor, subs, idle_wait)
        if away:
            zport = hosts.input(port, away, idle_wait, wake_self)
            inport = FanIn(inport, zport, idle_wait) if here else zport
        inputs[port] = inport
    return (hosts if opened else None), inputs, outputs
