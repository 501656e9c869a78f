"""Talking to a running nexus from another process: :func:`connect` and :class:`Client`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import zmq

from plexa.core import protocol as proto
from plexa.errors import PlexaError, RemoteError, Timeout
from plexa.nexus.cleanup import RunInfo, list_runs

__all__ = ["Client", "connect", "find_run"]


def find_run(name: str) -> RunInfo:
    """The live run called ``name`` (or with that run id)."""
    runs = [r for r in list_runs() if r.alive and name in (r.name, r.run_id)]
    if not runs:
        alive = [r.name for r in list_runs() if r.alive]
        hint = f"; running: {', '.join(alive)}" if alive else "; no run is alive"
        raise PlexaError(f"no running pipeline named {name!r}{hint}")
    if "control" not in runs[0].record.get("endpoints", {}):
        raise PlexaError(f"run {name!r} has no control endpoint")
    return runs[0]


class Client:
    """A connection to one run's control and event endpoints.

    ``request()`` sends a command and returns its value, raising :class:`RemoteError` with
    the nexus's reason when it is refused. ``events()`` yields events as they come.
    """

    def __init__(self, control: str, events: str, token: str, *, timeout: float = 5.0) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(control)
        self.events_endpoint = events
        self.token = token
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sub: zmq.Socket[Any] | None = None
        self._pending: list[proto.Event] = []
        self._kinds: set[str] = set()

    @classmethod
    def for_run(cls, name: str, *, timeout: float = 5.0) -> Client:
        """A client for the live run called ``name``."""
        run = find_run(name)
        endpoints = run.record["endpoints"]
        return cls(
            endpoints["control"], endpoints["events"], run.record.get("token", ""), timeout=timeout
        )

    def request(
        self, command: str, actor: str | None = None, *, timeout: float | None = None, **args: Any
    ) -> Any:
        """Send ``command`` and return its value; raises :class:`RemoteError` if refused."""
        resp = self.request_raw(command, actor, timeout=timeout, **args)
        if not resp.ok:
            raise RemoteError(resp.error, resp.traceback)
        return resp.value

    def request_raw(
        self, command: str, actor: str | None = None, *, timeout: float | None = None, **args: Any
    ) -> proto.Response:
        """Send ``command`` and return the whole :class:`~plexa.core.protocol.Response`."""
        req_id = next(self._ids)
        req = proto.Request(id=req_id, token=self.token, command=command, actor=actor, args=args)
        self.sock.send(proto.encode(req))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000), zmq.POLLIN):
                raise Timeout(f"no answer to {command!r} within {timeout or self.timeout} s")
            resp = proto.decode_response(self.sock.recv())
            if resp.id in (req_id, 0):
                return resp

    def invoke(self, actor: str, method: str, *args: Any, timeout: float = 30.0) -> Any:
        """Call ``@plexa.command`` ``method`` of ``actor``; raises :class:`RemoteError` with the
        remote traceback if it raised."""
        return self.request(
            "invoke", actor, timeout=timeout + 1, method=method, args=list(args), timeout_s=timeout
        )

    def set(self, actor: str, key: str, value: Any) -> None:
        """Change option ``key`` of ``actor`` (applied at its next safe point)."""
        self.request("set", actor, key=key, value=value)

    def status(self) -> dict[str, Any]:
        """The run's status object."""
        status: dict[str, Any] = self.request("status")
        return status

    def subscribe(self, kinds: tuple[str, ...] = ()) -> dict[str, Any]:
        """Start receiving events (all kinds, or only ``kinds``); returns the snapshot.

        The subscription is made before the snapshot is asked for, so no event between the
        two is missed; events older than the snapshot's ``seq`` can be skipped.
        """
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 10000)
        self._kinds = set(kinds)
        for kind in (*kinds, "metrics") if kinds else ("",):
            sub.setsockopt(zmq.SUBSCRIBE, kind.encode())
        sub.connect(self.events_endpoint)
        self._sub = sub
        # zmq joins a subscription asynchronously: wait for the first event (metrics come
        # twice a second) so that nothing published after the snapshot can be missed.
        if sub.poll(1500, zmq.POLLIN):
            self._pending.append(proto.decode_event(sub.recv_multipart()[-1]))
        snap: dict[str, Any] = self.request("snapshot")
        return snap

    def events(self, timeout: float | None = None) -> Iterator[proto.Event]:
        """Yield events until ``timeout`` seconds pass with none (None: forever)."""
        if self._sub is None:
            self.subscribe()
        assert self._sub is not None
        while self._pending:
            event = self._pending.pop(0)
            if not self._kinds or event.kind in self._kinds:
                yield event
        while True:
            if not self._sub.poll(None if timeout is None else int(timeout * 1000), zmq.POLLIN):
                return
            event = proto.decode_event(self._sub.recv_multipart()[-1])
            if not self._kinds or event.kind in self._kinds:
                yield event

    def close(self) -> None:
        """Disconnect."""
        if self._sub is not None:
            self._sub.close(0)
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(name: str, *, timeout: float = 5.0) -> Client:
    """A :class:`Client` for the running pipeline called ``name`` (or with that run id)."""
    return Client.for_run(name, timeout=timeout)
