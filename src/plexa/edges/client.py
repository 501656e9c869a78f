"""Talking to a running nexus from another process: :func:`connect` and :class:`Client`.

A local run is found by name in the runtime directory; its run record gives the endpoints
(ipc sockets in the run directory) and the token. A run on another host (``plexa server
--bind ADDR``) is reached with a copy of its run record, which also holds the CURVE keys:
``connect("run.json", host="lab-pc")``. See ``docs/security.md``.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import zmq

from plexa.core import protocol as proto
from plexa.errors import PlexaError, RemoteError, Timeout
from plexa.nexus.cleanup import RunInfo, list_runs

__all__ = ["Client", "connect", "find_run", "load_record"]


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

    def __init__(
        self,
        control: str,
        events: str,
        token: str,
        *,
        timeout: float = 5.0,
        curve: proto.CurveKeys | None = None,
    ) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.curve = curve
        """The run's CURVE keys (tcp runs); ``None`` for ipc."""
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self._secure(self.sock)
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
        return cls.from_record(find_run(name).record, timeout=timeout)

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any] | str | os.PathLike[str], *, host: str | None = None,
        timeout: float = 5.0,
    ) -> Client:  # fmt: skip
        """A client for the run described by ``record`` (a run record, or the path of a copy).

        ``host`` replaces the host of tcp endpoints: a record written by a server bound to
        ``0.0.0.0`` names no host another machine can reach.
        """
        if not isinstance(record, Mapping):
            record = load_record(record)
        endpoints = record.get("endpoints", {})
        if "control" not in endpoints or "events" not in endpoints:
            raise PlexaError(f"run {record.get('name', '?')!r} has no control endpoint")
        curve = record.get("curve")
        return cls(
            _on_host(endpoints["control"], host),
            _on_host(endpoints["events"], host),
            record.get("token", ""),
            timeout=timeout,
            curve=None if curve is None else msgspec.convert(curve, proto.CurveKeys),
        )

    def _secure(self, sock: zmq.Socket[Any]) -> None:
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.curve.server_key.encode())
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.client_key.encode())
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.client_secret.encode())

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
        self._secure(sub)
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


def connect(name: str, *, host: str | None = None, timeout: float = 5.0) -> Client:
    """A :class:`Client` for the running pipeline called ``name`` (or with that run id), or
    for the run whose record (a copy of its ``run.json``) is at path ``name``."""
    if name.endswith(".json") or os.sep in name:
        return Client.from_record(name, host=host, timeout=timeout)
    return Client.from_record(find_run(name).record, host=host, timeout=timeout)


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run record read from ``path`` (refused if other users could read it: it holds the
    token and keys)."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        record: dict[str, Any] = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise PlexaError(f"cannot read run record {file}: {exc}") from None
    if mode & 0o077:
        raise PlexaError(
            f"run record {file} is readable by others (mode {mode & 0o777:o}); chmod 600 it"
        )
    return record


def _on_host(endpoint: str, host: str | None) -> str:
    if host is None or not endpoint.startswith("tcp://"):
        return endpoint
    port = endpoint.rsplit(":", 1)[1]
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
