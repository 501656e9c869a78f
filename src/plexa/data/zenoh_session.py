"""Zenoh sessions for a run's hosts: plexa's settings (endpoints, lease, mutual TLS) and the
checks that keep data from leaving a host unauthenticated. Used by cross-host links
(:mod:`plexa.data.zenoh_links`) and the agents that join hosts to a run.

Facts behind the defaults (verified with eclipse-zenoh 1.10, see ``docs/hosts.md``): a peer
without listen endpoints listens on every interface; multicast scouting finds anything on
the LAN; shared memory (on by default) left files in /dev/shm after the processes exited;
Zenoh's default lease notices a cut link after ~10 s (1 s here).

A cut link is closed within about a lease only with help: Zenoh notices the silence after the
lease, but closing a ``tls/`` link first flushes the TLS stream, without a timeout. When the
cable was cut while data was flowing (a router relaying frames to the lost host), the
socket's send buffer is full and the flush waited until TCP gave up, ~15 minutes; the link,
its transport and the host's liveliness token stayed, and its departure went unnoticed. So
every TCP connection of a session gets ``TCP_USER_TIMEOUT`` = the lease: data left
unacknowledged that long aborts the connection, and the close completes.

``wait_before_close`` (how long a ``block`` put may wait for room in Zenoh's queue before
Zenoh closes the whole connection, losing what was queued) is a backstop, 60 s. Plexa's
credits (:mod:`plexa.data.zenoh_links`) already bound what a link queues to ``capacity``
messages, so a put waits only while the network drains that much. On a dead link the wait
ends when the lease closes the connection (the put fails, the loss is counted). It must be
well above the lease, so that a cut is always the lease's (``host_lost``), and above the time
a slow live link needs to carry ``capacity`` messages; a closed connection would make a
live host look lost.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time

import msgspec
import zenoh

from plexa.errors import ConfigError, ConfigIssue, Timeout

__all__ = [
    "TlsFiles",
    "ZenohSettings",
    "bound_unacked",
    "check_settings",
    "open_session",
    "wait_connected",
    "zenoh_config",
]


class TlsFiles(msgspec.Struct, frozen=True, kw_only=True):
    """Mutual TLS: this host's certificate and key, and the CA that signs every host's."""

    ca: str
    cert: str
    key: str


class ZenohSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How this process joins the hosts of a run.

    Off-host endpoints must be ``tls/`` with :attr:`tls` set; plain ``tcp/`` is accepted on
    loopback, or anywhere with ``insecure=True`` (benchmarks, closed test networks).
    """

    listen: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    lease_ms: int = 1000
    """A peer whose link went silent is gone after this long (default 1 s; Zenoh's is 10 s)."""
    tls: TlsFiles | None = None
    insecure: bool = False
    mode: str = "peer"
    """``peer``; ``router`` for an agent or a nexus that relays its host's actors' links;
    ``client`` for an actor process that reaches them through its host's router."""

    @property
    def authenticated(self) -> bool:
        """True when every peer had to prove who it is (mutual TLS)."""
        return self.tls is not None


def _loopback(endpoint: str) -> bool:
    host = endpoint.split("/", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(endpoint: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue("hosts", None, f"endpoint {endpoint}", message)])


def check_settings(settings: ZenohSettings) -> None:
    """Refuse settings that would carry a run's data unauthenticated off this host
    (:class:`ConfigError`)."""
    for endpoint in (*settings.listen, *settings.connect):
        proto = endpoint.split("/", 1)[0]
        if proto == "tls":
            if settings.tls is None:
                raise _refuse(endpoint, "tls/ needs certificate files (tls: ca, cert, key)")
        elif proto == "tcp":
            if not (settings.insecure or _loopback(endpoint)):
                raise _refuse(
                    endpoint,
                    "plain tcp off this host carries data unencrypted and unauthenticated; "
                    "use tls/ (or insecure: true on a closed network)",
                )
        elif proto != "unixsock-stream":  # a socket file: guarded by its private folder
            raise _refuse(endpoint, "only tcp/, tls/ and unixsock-stream/ endpoints are supported")


def zenoh_config(settings: ZenohSettings) -> zenoh.Config:
    """The Zenoh configuration plexa uses: a peer that listens and connects exactly where it
    is told (no scouting), no shared memory (it left files in /dev/shm), a short lease."""
    check_settings(settings)
    cfg = zenoh.Config()
    put = cfg.insert_json5
    if settings.mode not in ("peer", "router", "client"):
        raise _refuse(settings.mode, "mode must be peer, router or client")
    put("mode", json.dumps(settings.mode))
    put("scouting/multicast/enabled", "false")
    put("scouting/gossip/enabled", "false")
    put("transport/shared_memory/enabled", "false")
    put("listen/endpoints", json.dumps(list(settings.listen)))
    put("connect/endpoints", json.dumps(list(settings.connect)))
    put("transport/link/tx/lease", str(settings.lease_ms))
    put("transport/link/tx/keep_alive", "4")
    # a backstop well above the lease: see the module's docstring
    put("transport/link/tx/queue/congestion_control/block/wait_before_close", "60000000")
    if settings.tls is not None:
        tls = settings.tls
        for key, value in (
            ("root_ca_certificate", tls.ca),
            ("listen_certificate", tls.cert),
            ("listen_private_key", tls.key),
            ("connect_certificate", tls.cert),
            ("connect_private_key", tls.key),
        ):
            put(f"transport/link/tls/{key}", json.dumps(value))
        put("transport/link/tls/enable_mtls", "true")
    return cfg


def open_session(settings: ZenohSettings) -> zenoh.Session:
    """A Zenoh session for ``settings``. Close it (``session.close()``): a session with
    Python callbacks that is left open keeps the interpreter from exiting.

    Each TCP connection it opens or accepts gets ``TCP_USER_TIMEOUT`` = the lease (see the
    module's docstring), set when Zenoh reports the link."""
    session = zenoh.open(zenoh_config(settings))
    if settings.listen or settings.connect:
        timeout_ms = settings.lease_ms

        def on_link(event: zenoh.LinkEvent) -> None:
            if event.kind == zenoh.SampleKind.PUT:
                bound_unacked(event.link.src, event.link.dst, timeout_ms)

        # a background listener: it lives as long as the session
        session.info.declare_link_events_listener(on_link, history=True)
    return session


Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _address(locator: str) -> Address | None:
    """``tcp/1.2.3.4:7447`` or ``tls/[::1]:7447`` as (ip, port); None for other links."""
    proto, _, rest = locator.partition("/")
    if proto not in ("tcp", "tls"):
        return None
    host, _, port = rest.split("?", 1)[0].split("#", 1)[0].rpartition(":")
    try:
        return _plain(ipaddress.ip_address(host.strip("[]")), int(port))
    except ValueError:
        return None


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, port
    return ip, port


def _sock_address(raw: tuple[object, ...]) -> Address:
    return _plain(ipaddress.ip_address(str(raw[0])), int(str(raw[1])))


def bound_unacked(src: str, dst: str, timeout_ms: int) -> bool:
    """Give this process's TCP socket from ``src`` to ``dst`` (Zenoh locators) the option
    ``TCP_USER_TIMEOUT`` = ``timeout_ms``: the kernel aborts the connection when data stays
    unacknowledged that long. Returns False if no such socket is found (or not on Linux)."""
    here, there = _address(src), _address(dst)
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if here is None or there is None or option is None:
        return False
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for name in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))  # a copy: Zenoh owns the original
        except OSError:
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.family not in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    continue
                if (
                    _sock_address(sock.getsockname()) == here
                    and _sock_address(sock.getpeername()) == there
                ):
                    sock.setsockopt(socket.IPPROTO_TCP, option, timeout_ms)
                    return True
            except (OSError, ValueError):
                continue
    return False


def wait_connected(session: zenoh.Session, peers: int = 1, timeout: float = 10.0) -> None:
    """Wait until ``session`` has ``peers`` peers (a refused TLS peer never counts)."""
    deadline = time.monotonic() + timeout
    while len(list(session.info.peers_zid())) < peers:
        if time.monotonic() > deadline:
            raise Timeout(f"no Zenoh peer within {timeout} s (refused, or not listening?)")
        time.sleep(0.01)
