"""Zenoh sessions for a run's hosts: plexa's settings (endpoints, lease, mutual TLS) and the
checks that keep data from leaving a host unauthenticated. Used by cross-host links
(:mod:`plexa.data.zenoh_links`) and the agents that join hosts to a run.

Facts behind the defaults (verified with eclipse-zenoh 1.10, see ``docs/hosts.md``): a peer
without listen endpoints listens on every interface; multicast scouting finds anything on
the LAN; shared memory (on by default) left files in /dev/shm after the processes exited;
Zenoh's default lease notices a cut link after ~10 s (1 s here).
"""

from __future__ import annotations

import ipaddress
import json
import time

import msgspec
import zenoh

from plexa.errors import ConfigError, ConfigIssue, Timeout

__all__ = [
    "TlsFiles",
    "ZenohSettings",
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
    # credits bound what is queued; a long block means a dead peer, which the lease finds
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
    Python callbacks that is left open keeps the interpreter from exiting."""
    return zenoh.open(zenoh_config(settings))


def wait_connected(session: zenoh.Session, peers: int = 1, timeout: float = 10.0) -> None:
    """Wait until ``session`` has ``peers`` peers (a refused TLS peer never counts)."""
    deadline = time.monotonic() + timeout
    while len(list(session.info.peers_zid())) < peers:
        if time.monotonic() > deadline:
            raise Timeout(f"no Zenoh peer within {timeout} s (refused, or not listening?)")
        time.sleep(0.01)
