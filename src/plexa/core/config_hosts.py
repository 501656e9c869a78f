"""The ``hosts:`` and ``tls:`` sections of a pipeline file, and the actors' ``host:`` lines.

```yaml
hosts:
  gpu: {endpoint: tls/192.0.2.20:7447, key_file: gpu.key}
tls: {ca: ca.pem, cert: nexus.pem, key: nexus.key}   # the nexus's side of mutual TLS
actors:
  traces: {class: "pkg.mod:Traces", host: gpu}       # no host: runs beside the nexus
```

Relative file names are taken from the pipeline file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from plexa.core.config_checks import Checker, suggest
from plexa.core.spec import ActorSpec, HostSpec, HostTls

__all__ = ["HOST_KEYS", "check_hosts"]

HOST_KEYS = ("endpoint", "key_file", "insecure")
TLS_KEYS = ("ca", "cert", "key")
PROTOCOLS = ("tls/", "tcp/")


def _file(base: Path | None, value: str) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)


def check_hosts(
    check: Checker, raw: object, raw_tls: object, actors: dict[str, ActorSpec], source: str
) -> tuple[dict[str, HostSpec], HostTls | None, dict[str, ActorSpec]]:
    """The hosts, the nexus's TLS files, and the actors (each ``host:`` checked)."""
    base = Path(source).resolve().parent if not source.startswith("<") else None
    hosts: dict[str, HostSpec] = {}
    if raw is not None and not isinstance(raw, dict):
        check.add("hosts", f"must be a mapping of host names, not {type(raw).__name__}",
                  "e.g. hosts: {gpu: {endpoint: tls/192.0.2.20:7447}}")  # fmt: skip
        raw = {}
    for name, entry in (raw or {}).items():
        path = f"hosts.{name}"
        if not isinstance(entry, dict):
            check.add(path, "must be a mapping with an 'endpoint'",
                      "e.g. {endpoint: tls/192.0.2.20:7447}")  # fmt: skip
            continue
        for key in entry:
            if key not in HOST_KEYS:
                check.unknown(f"{path}.{key}", key, HOST_KEYS)
        endpoint = entry.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(PROTOCOLS):
            why = f"must be tls/HOST:PORT or tcp/HOST:PORT, not {endpoint!r}"
            check.add(f"{path}.endpoint", why, "where the host's plexa agent listens")
            continue
        if endpoint.startswith("tcp/") and entry.get("insecure") is not True:
            check.add(f"{path}.endpoint", "plain tcp lets anyone who reaches the port (other "
                      "users of this machine too) pose as the agent", "use tls/ (or "
                      "insecure: true on a closed network)")  # fmt: skip
        key_file = entry.get("key_file", "")
        if not isinstance(key_file, str):
            check.add(f"{path}.key_file", f"must be a file name, not {key_file!r}")
            key_file = ""
        insecure = entry.get("insecure", False)
        if not isinstance(insecure, bool):
            check.add(f"{path}.insecure", f"must be true or false, not {insecure!r}")
            insecure = False
        hosts[name] = HostSpec(
            name=name,
            endpoint=endpoint,
            key_file=_file(base, key_file) if key_file else "",
            insecure=insecure,
        )
    tls = None
    if raw_tls is not None:
        if not isinstance(raw_tls, dict) or set(raw_tls) != set(TLS_KEYS):
            check.add("tls", "must be a mapping with ca, cert and key",
                      "e.g. tls: {ca: ca.pem, cert: nexus.pem, key: nexus.key}")  # fmt: skip
        else:
            files: dict[str, Any] = {k: _file(base, str(v)) for k, v in raw_tls.items()}
            tls = HostTls(**files)
    placed = dict(actors)
    for name, actor in actors.items():
        for host in (actor.host, *actor.also):
            if host and host not in hosts:
                check.add(f"actors.{name}.host", f"unknown host {host!r}",
                          suggest(host, hosts, "hosts"))  # fmt: skip
                placed[name] = msgspec.structs.replace(actor, host="", also=())
    return hosts, tls, placed
