"""The checks of what a pipeline file says about Ray: ``settings.launch``, ``settings.pool``,
``settings.ray`` and each actor's ``resources:`` (see ``docs/ray.md``)."""

from __future__ import annotations

from typing import Any

from plexa.core.config_checks import SIZE_HINT, Checker, parse_size
from plexa.core.spec import RaySettings, Resources

__all__ = ["LAUNCHERS", "POOLS", "RESOURCE_KEYS", "check_launch", "ray_settings", "resources"]

LAUNCHERS = ("local", "ray")
"""Where actor processes can run (``settings.launch``)."""
POOLS = ("local", "ray")
"""Where ``map``/``imap`` tasks can run (``settings.pool``)."""
RAY_KEYS = RaySettings.__struct_fields__
RESOURCE_KEYS = Resources.__struct_fields__


def ray_settings(check: Checker, path: str, raw: object) -> RaySettings | None:
    """``settings.ray``: ``{address: HOST:PORT, num_cpus: 2, object_store_memory: 80MB}``,
    or just the address."""
    if isinstance(raw, str):
        raw = {"address": raw}
    if not isinstance(raw, dict):
        check.add(path, f"must be a mapping or an address, not {raw!r}", "e.g. ray: {num_cpus: 2}")
        return None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key not in RAY_KEYS:
            check.unknown(where, key, RAY_KEYS)
        elif key == "address":
            if not isinstance(value, str):
                check.add(where, f"must be an address (HOST:PORT or auto), not {value!r}")
            values[key] = str(value) if value is not None else ""
        elif key == "num_cpus":
            values[key] = check.number(where, value, "an integer >= 1")
        else:
            size = parse_size(value)
            if size is None or size < 75 * 2**20:
                check.add(where, f"must be a size of at least 75MB, not {value!r}", SIZE_HINT)
            values[key] = size
    return RaySettings(**{k: v for k, v in values.items() if v is not None})


def check_launch(check: Checker, values: dict[str, Any]) -> None:
    """``launch`` and ``pool`` name a known place; ``pool: ray`` needs a cluster."""
    for key, valid in (("launch", LAUNCHERS), ("pool", POOLS)):
        if key in values and values[key] not in valid:
            check.add(f"settings.{key}", f"must be one of {', '.join(valid)}, not {values[key]!r}")
            values[key] = None
    ray = values.get("ray") or RaySettings()
    if values.get("pool") == "ray" and values.get("launch") != "ray" and not ray.address:
        check.add(
            "settings.pool",
            "pool: ray needs a Ray cluster",
            "add launch: ray (plexa then starts one), or ray: {address: HOST:PORT}",
        )


def resources(check: Checker, path: str, raw: object) -> Resources | None:
    """An actor's ``resources:``: ``{num_cpus, num_gpus, memory: 2GB, custom: {name: n},
    node: ID-or-IP, soft: bool, labels: {key: value}}``."""
    if not isinstance(raw, dict):
        check.add(path, f"must be a mapping, not {raw!r}", "e.g. resources: {num_cpus: 1}")
        return None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key not in RESOURCE_KEYS:
            check.unknown(where, key, RESOURCE_KEYS)
        elif key in ("num_cpus", "num_gpus"):
            got = check.number(where, value, "a number >= 0")
            values[key] = None if got is None else float(got)
        elif key == "memory":
            size = parse_size(value)
            if size is None or size < 0:
                check.add(where, f"must be a size, not {value!r}", SIZE_HINT)
            values[key] = size
        elif key == "custom":
            if not isinstance(value, dict) or not all(
                isinstance(k, str)
                and isinstance(v, int | float)
                and not isinstance(v, bool)
                and v > 0
                for k, v in value.items()
            ):
                check.add(where, f"must map resource names to positive amounts, not {value!r}")
            else:
                values[key] = {k: float(v) for k, v in value.items()}
        elif key == "node":
            if not isinstance(value, str) or not value:
                check.add(where, f"must be a Ray node id or a node's IP address, not {value!r}")
            values[key] = value if isinstance(value, str) else None
        elif key == "soft":
            if not isinstance(value, bool):
                check.add(where, f"must be true or false, not {value!r}")
            values[key] = value if isinstance(value, bool) else None
        else:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                check.add(where, f"must map label names to values, not {value!r}")
            else:
                values[key] = dict(value)
    return Resources(**{k: v for k, v in values.items() if v is not None})
