"""The nexus's side of a Ray run whose actors sit on several nodes (see :mod:`plexa.launch.ray`).

Links between actors of different groups (:mod:`plexa.launch.ray_place`) are the cross-host
links of ``docs/hosts.md``: each actor process reaches a Zenoh router through a unix socket
(``PLEXA_ZENOH``), as an actor on an agent's host does. On the nexus's node that is the
nexus's own router, the :class:`Hub`; on every other node it is the router of the node's
plexa agent (:mod:`plexa.nexus.ray_agent`), which connects to the hub over mutual TLS with
certificates made for the run: a CA whose key never leaves the nexus's memory, signing one
certificate for the hub and one for the node agents (sent to each: another machine cannot
read the nexus's files).

The hub also joins the node agents and relays their actors' control, counters and
checkpoints, with the code that serves hosts' agents (:class:`plexa.launch.remote.HostsLauncher`).
The agents are Ray actors owned by the nexus: quit ends them (each removes the run's files
on its node first), and Ray ends them when the nexus is killed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

from plexa.core.paths import RunPaths
from plexa.core.spec import PipelineSpec

__all__ = ["AGENT_CLOSE_S", "Hub", "free_port", "write_certs"]

AGENT_CLOSE_S = 5.0
"""How long the node agents may take to end the run on their nodes at quit."""


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


class Hub:
    """The nexus's side: its Zenoh router (listening on ``tls/IP:PORT`` for the node agents,
    on a unix socket in the run's directory for actors on the nexus's node), the run's
    certificates, and one :class:`plexa.nexus.ray_agent.NodeAgent` per other node that
    holds actors. The agents are joined, relayed and counted by a
    :class:`plexa.launch.remote.HostsLauncher` over the hub's session, as hosts' agents are."""

    def __init__(self, paths: RunPaths, spec: PipelineSpec, ip: str, agent_class: Any) -> None:
        from plexa.data.zenoh_session import TlsFiles, ZenohSettings, open_session
        from plexa.launch.remote import HostsLauncher

        self.run_id = paths.run_id
        self.certs = write_certs(paths.run_dir / "ray-tls", ip)
        host = f"[{ip}]" if ":" in ip else ip
        self.endpoint = f"tls/{host}:{free_port(ip)}"
        local = f"unixsock-stream/{paths.run_dir / 'zenoh.sock'}"
        settings = ZenohSettings(
            mode="router", listen=(self.endpoint, local), tls=TlsFiles(**self.certs["hub"])
        )
        self.hosts = HostsLauncher()
        self.hosts.attach(paths, spec, open_session(settings), ())
        self.zenv = json.dumps(
            {"settings": {"mode": "client", "connect": [local]}, "run": self.run_id,
             "authenticated": True}
        )  # fmt: skip
        """``PLEXA_ZENOH`` for actors on the nexus's node."""
        self._agent_class = agent_class
        self._pems = {k: Path(v).read_bytes() for k, v in self.certs["node"].items()}
        """The node agents' certificate files, sent to each (another machine has no copy)."""
        self.agents: dict[str, Any] = {}
        """Node id -> its agent (the Ray actor)."""

    def agent(self, node_id: str, env: dict[str, str]) -> Any:
        """Node ``node_id``'s agent (started if need be, with the run's ``env``; started
        again if the one there left while its node lives: killed by hand, say)."""
        scope = f"ray.{self.run_id}.{node_id[:12]}"
        host = self.hosts.hosts.get(scope)
        if node_id in self.agents and host is not None and host.departed:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self.agents.pop(node_id), no_restart=True)
            host.departed = False
        if node_id not in self.agents:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from plexa.core.spec import HostSpec

            if scope not in self.hosts.hosts:
                self.hosts.add_host(HostSpec(name=scope, endpoint=self.endpoint))
            self.agents[node_id] = self._agent_class.options(
                num_cpus=0, max_restarts=0, max_concurrency=8,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(scope, self.endpoint, self._pems, env)  # fmt: skip
        return self.agents[node_id]

    def forget(self, node_id: str) -> None:
        """Node ``node_id`` was lost: an agent there is started again if it comes back."""
        self.agents.pop(node_id, None)

    def close(self, ray: Any) -> None:
        """End every node's run (their agents remove its files there), then the agents,
        and the hub's session."""
        closing = [agent.close.remote() for agent in self.agents.values()]
        with contextlib.suppress(Exception):
            ray.wait(closing, num_returns=len(closing), timeout=AGENT_CLOSE_S)
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                ray.kill(agent, no_restart=True)
        self.agents.clear()
        self.hosts.close()
