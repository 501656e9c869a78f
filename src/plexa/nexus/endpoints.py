"""The control server's two sockets and where they are bound.

* Locally (the default): ipc sockets in the run directory, whose mode (0700) keeps every
  other user out.
* Over tcp (``plexa server --bind ADDR``, or fixed ``settings.control`` /
  ``settings.output``): CurveZMQ on both sockets, encrypted, and a ZAP allow-list that
  admits only the run's client key (written to the 0600 run record). See ``docs/security.md``.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Any

import zmq

from plexa.core import protocol as proto
from plexa.core.paths import RunPaths
from plexa.core.protocol import tcp_address
from plexa.core.spec import Settings
from plexa.errors import EndpointInUse

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

__all__ = ["EVENT_HWM", "Endpoints"]

EVENT_HWM = 1000
"""Events queued per subscriber before a slow one starts losing them (never blocking)."""
ZAP_DOMAIN = "plexa"


class Endpoints:
    """A ROUTER for commands and a PUB for events, bound locally or over tcp with CURVE."""

    def __init__(self, paths: RunPaths, settings: Settings, bind: str | None) -> None:
        self.paths = paths
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, proto.MAX_REQUEST_BYTES)
        self.events = self.ctx.socket(zmq.PUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SNDHWM, EVENT_HWM)
        self.curve: proto.CurveKeys | None = None
        """The keys of a tcp run (the server's public key, the client key pair it admits)."""
        self._auth: ThreadAuthenticator | None = None
        self._bound = False
        fixed = [tcp_address(e) if e else None for e in (settings.control, settings.output)]
        hosts_from_settings = bind is None
        if bind is None and any(fixed):  # settings.control / output: fixed tcp endpoints
            bind = next(a for a in fixed if a)[0]
        self.bind = bind
        """``None``: ipc sockets in the run directory; else tcp on this address, with CURVE."""
        if bind is None:
            self.control_endpoint = paths.endpoint("control")
            self.events_endpoint = paths.endpoint("events")
            self.bind_local()
            return
        self._secure()
        try:
            for which, sock, address, setting in (
                ("control", self.control, fixed[0], "control"),
                ("events", self.events, fixed[1], "output"),
            ):
                host = address[0] if address and hosts_from_settings else bind
                port = address[1] if address else 0
                setattr(self, f"{which}_endpoint", _bind_tcp(sock, host, port, setting))
        except BaseException:
            self.close()
            raise

    def bind_local(self) -> None:
        """Bind the ipc sockets, once the run directory exists (else when asked again)."""
        if self.bind is None and not self._bound and self.paths.run_dir.is_dir():
            self.control.bind(self.control_endpoint)
            self.events.bind(self.events_endpoint)
            self._bound = True

    def _secure(self) -> None:
        """CURVE on both sockets: encrypted, and only the run's client key gets in (ZAP)."""
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        self.curve = proto.CurveKeys(
            server_key=server_public.decode(),
            client_key=client_public.decode(),
            client_secret=client_secret.decode(),
        )
        from zmq.auth.thread import ThreadAuthenticator  # asyncio, ssl: only for tcp

        self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("plexa.server.auth"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, _AllowList({client_public}))
        for sock in (self.control, self.events):
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, server_secret)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())

    def close(self) -> None:
        """Close both sockets and the authenticator."""
        self.control.close(0)
        self.events.close(0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()


def _bind_tcp(sock: zmq.Socket[Any], address: str, port: int, setting: str) -> str:
    """Bind ``sock`` to ``tcp://address:port`` (0: the OS picks); the endpoint bound."""
    host = f"[{address}]" if ":" in address else address
    if ":" in address:
        sock.setsockopt(zmq.IPV6, 1)
    try:
        sock.bind(f"tcp://{host}:{port}")
    except zmq.ZMQError as exc:
        why = (
            "another run may hold the port: choose another"
            if exc.errno == errno.EADDRINUSE
            else "give an address of this host"
        )
        raise EndpointInUse(
            f"cannot bind settings.{setting} tcp://{host}:{port}: {exc.strerror} ({why}, "
            f"or leave settings.{setting} out)"
        ) from None
    endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return endpoint


class _AllowList:
    """The ZAP credentials check: a client's CURVE public key must be one of ``keys``."""

    def __init__(self, keys: set[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys
