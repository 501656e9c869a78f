"""The Zenoh routers of a Ray run whose actors sit on several nodes (see :mod:`plexa.launch.ray`).

Links between actors of different groups (:mod:`plexa.launch.ray_place`) are the cross-host
links of ``docs/hosts.md``: each actor process reaches its node's Zenoh router through a unix
socket (``PLEXA_ZENOH``), as an actor on an agent's host does. Here the node's router is a
small Ray actor, :class:`NodeRouter` (no CPU reserved, pinned to its node), started the
first time an actor with such a link is placed on that node. Every node router connects to
the nexus's router, the :class:`Hub`, over mutual TLS with certificates made for the run:
a CA whose key never leaves the nexus's memory, signing one certificate for the hub and one
for the node routers (their files are in the run's private directory, which actors on other
nodes already need on a shared path).

The node routers are Ray actors owned by the nexus: Ray ends them with the run, also when
the nexus is killed; their sockets and certificates go with the run's directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["ROUTER_READY_S", "Hub", "NodeRouter", "free_port", "write_certs"]

ROUTER_READY_S = 20.0
"""How long a node router may take to reach the hub before its actors' start fails."""


def free_port(ip: str) -> int:
    """A TCP port free on ``ip`` now (Zenoh does not say which port ``:0`` took)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def write_certs(folder: Path, ip: str) -> dict[str, dict[str, str]]:
    """Make the run's CA and its two certificates (``hub`` for the nexus's address ``ip``,
    ``node`` for the node routers) in ``folder`` (0700, files 0600); returns the TLS file
    paths of each (``ca``, ``cert``, ``key``). The CA's key is not written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from plexa.core.paths import write_private

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("plexa ray run CA")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(mode=0o700, exist_ok=True)
    write_private(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    usage = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
    files: dict[str, dict[str, str]] = {}
    for role in ("hub", "node"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(f"plexa ray {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(san, critical=False).add_extension(usage, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(folder / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM))
        write_private(folder / f"{role}.key", pem)
        files[role] = {
            "ca": str(folder / "ca.pem"),
            "cert": str(folder / f"{role}.pem"),
            "key": str(folder / f"{role}.key"),
        }
    return files


class NodeRouter:
    """The Ray actor that runs one node's Zenoh router: it listens on a unix socket for the
    node's actors and connects to the hub."""

    def __init__(self, sock: str, hub: str, tls: dict[str, str]) -> None:
        from plexa.data.zenoh_session import TlsFiles, ZenohSettings, open_session

        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)  # a router of this node killed before (its node came back)
        self.sock = sock
        settings = ZenohSettings(
            mode="router", listen=(f"unixsock-stream/{sock}",), connect=(hub,), tls=TlsFiles(**tls)
        )
        self.session: Any = open_session(settings)

    def ready(self) -> bool:
        """True once connected to the hub (raises after :data:`ROUTER_READY_S`)."""
        deadline = time.monotonic() + ROUTER_READY_S
        while not list(self.session.info.routers_zid()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the node's Zenoh router did not reach the nexus in {ROUTER_READY_S} s"
                )
            time.sleep(0.01)
        return True


class Hub:
    """The nexus's side: its router (listening on ``tls/IP:PORT``), the run's certificates
    and one :class:`NodeRouter` per node that needs one."""

    def __init__(self, run_id: str, run_dir: Path, ip: str, router_class: Any) -> None:
        from plexa.data.zenoh_session import TlsFiles, ZenohSettings, open_session

        self.run_id = run_id
        self.run_dir = run_dir
        self.certs = write_certs(run_dir / "ray-tls", ip)
        host = f"[{ip}]" if ":" in ip else ip
        self.endpoint = f"tls/{host}:{free_port(ip)}"
        settings = ZenohSettings(
            mode="router", listen=(self.endpoint,), tls=TlsFiles(**self.certs["hub"])
        )
        self.session: Any = open_session(settings)
        self._router_class = router_class
        self.routers: dict[str, tuple[Any, Any, str]] = {}
        """Node id -> its router (the Ray actor), its ``ready`` reference, its socket."""

    def router(self, node_id: str) -> tuple[Any, str]:
        """Node ``node_id``'s router (started if need be): its ``ready`` reference (give it to
        the host's ``start``, which Ray then runs once the router is up), and the
        ``PLEXA_ZENOH`` value for the node's actors."""
        if node_id not in self.routers:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            sock = str(self.run_dir / f"zenoh-{node_id[:12]}.sock")
            actor = self._router_class.options(
                num_cpus=0, max_restarts=0, max_concurrency=2,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(sock, self.endpoint, self.certs["node"])  # fmt: skip
            self.routers[node_id] = (actor, actor.ready.remote(), sock)
        _, ready, sock = self.routers[node_id]
        env = {
            "settings": {"mode": "client", "connect": [f"unixsock-stream/{sock}"]},
            "run": self.run_id,
            "authenticated": True,
        }
        return ready, json.dumps(env)

    def forget(self, node_id: str) -> None:
        """Node ``node_id`` was lost: a router there is started again if it comes back."""
        self.routers.pop(node_id, None)

    def close(self, ray: Any) -> None:
        """End every node router and the hub's session."""
        for actor, _, _ in self.routers.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.routers.clear()
        with contextlib.suppress(Exception):
            self.session.close()
