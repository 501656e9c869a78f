"""The checks of a pipeline file's sections: the primitives every check uses (line, issue,
choice, number), then ``settings:``, ``record:`` and ``connections:``.

:class:`Checker` walks parsed YAML data, collecting :class:`~plexa.errors.ConfigIssue` records
and building specs as it goes; the actor sections are checked by its subclass in
:mod:`plexa.core.config_actors`.
"""

from __future__ import annotations

import difflib
import enum
import re
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from plexa.core.actor import Actor
from plexa.core.protocol import tcp_address
from plexa.core.spec import ActorSpec, LinkSpec, OnFailure, Policy, RecordSpec, Settings
from plexa.errors import ConfigIssue

__all__ = ["SIZE_HINT", "Checker", "parse_size", "suggest"]

E = TypeVar("E", bound=enum.StrEnum)

LINK_KEYS = ("to", "policy", "capacity")
SETTING_KEYS: tuple[str, ...] = (*Settings.__struct_fields__, "store")
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(i?)(b?)", re.IGNORECASE)
SIZE_HINT = "give bytes, or a size such as '256MB', '1GiB' or '512k'"

_NUMBERS: dict[str, tuple[type | types.UnionType, Callable[[Any], bool]]] = {
    "a positive number": (int | float, lambda x: x > 0),
    "a number >= 0": (int | float, lambda x: x >= 0),
    "an integer >= 0": (int, lambda x: x >= 0),
    "an integer >= 1": (int, lambda x: x >= 1),
}


def suggest(word: object, choices: Iterable[str], listing: str = "") -> str:
    """``did you mean 'x'?`` for the nearest choice, then ``listing: a, b`` when asked."""
    names = list(choices)
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else ""
    if listing:
        hint = f"{hint} {listing}: {', '.join(names) or 'none'}".strip()
    return hint


class Checker:
    """Walks the parsed data, collecting issues and building specs as it goes."""

    def __init__(self, source: str, lines: dict[str, int], issues: list[ConfigIssue]) -> None:
        self.source = source
        self.lines = lines
        self.issues = list(issues)
        self.classes: dict[str, type[Actor] | None] = {}
        self.targets: dict[str, str] = {}
        self.outputs: dict[str, tuple[str, ...]] = {}
        self.named_ports: dict[tuple[str, str], list[str]] = {}
        """Ports of ``open_ports`` classes (improv's named links) named only by connections."""

    def line(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None

    def add(self, key: str, message: str, hint: str = "", at: int | None = None) -> None:
        line = at if at is not None else self.line(key)
        self.issues.append(ConfigIssue(self.source, line, key, message, hint))

    def unknown(self, key: str, word: str, valid: Sequence[str]) -> None:
        hint = suggest(word, valid) or f"valid keys: {', '.join(valid)}"
        self.add(key, f"unknown key {word!r}", hint)

    def choice(self, key: str, value: object, kind: type[E]) -> E | None:
        names = [member.value for member in kind]
        if isinstance(value, str) and value in names:
            return kind(value)
        self.add(key, f"must be one of {', '.join(names)}, not {value!r}", suggest(value, names))
        return None

    def number(self, key: str, value: object, want: str) -> Any:
        kind, ok = _NUMBERS[want]
        if isinstance(value, kind) and not isinstance(value, bool) and ok(value):
            return value
        self.add(key, f"must be {want}, not {value!r}")
        return None

    def settings(self, raw: object) -> Settings:
        from plexa.core import config_ray

        if raw is None:
            return Settings()
        if not isinstance(raw, dict):
            self.add("settings", f"must be a mapping, not {type(raw).__name__}")
            return Settings()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            path = f"settings.{key}"
            if key not in SETTING_KEYS:
                self.unknown(path, key, SETTING_KEYS)
            elif key == "store_size":
                size = parse_size(value)
                if size is None or size <= 0:
                    self.add(path, f"must be a positive size, not {value!r}", SIZE_HINT)
                values[key] = size
            elif key in ("store", "store_path"):
                self.store_setting(path, value, values)
            elif key in ("control", "output"):
                if value is not None and (not isinstance(value, str) or not tcp_address(value)):
                    hint = "e.g. tcp://127.0.0.1:5555; leave it out for a private local socket"
                    self.add(path, f"must be tcp://HOST:PORT or null, not {value!r}", hint)
                values[key] = value
            elif key == "on_failure":
                values[key] = self.choice(path, value, OnFailure)
            elif key in ("launch", "pool"):
                values[key] = value
            elif key == "ray":
                values[key] = config_ray.ray_settings(self, path, value)
            elif key in ("metrics", "use_watcher", "use_hdd"):
                if not isinstance(value, bool):
                    self.add(path, f"must be true or false, not {value!r}")
                values[key] = value if isinstance(value, bool) else None
            else:
                want = "a number >= 0" if key == "drain_timeout" else "a positive number"
                got = self.number(path, value, want)
                values[key] = None if got is None else float(got)
        config_ray.check_launch(self, values)
        return Settings(**{k: v for k, v in values.items() if v is not None})

    def record(self, raw: object, actors: dict[str, ActorSpec]) -> RecordSpec | None:
        """The ``record:`` section: ``{path, links: all | [actor.port, ...], chunk_size,
        compression, policy, capacity, foxglove: [actor.port, ...]}``."""
        if raw is None or raw is False:
            return None
        if raw is True:
            raw = {}
        if isinstance(raw, str):
            raw = {"path": raw}
        if not isinstance(raw, dict):
            self.add("record", f"must be a mapping or a file path, not {raw!r}")
            return None
        keys = RecordSpec.__struct_fields__
        values: dict[str, Any] = {}
        outputs = [f"{n}.{p}" for n, a in actors.items() for p in a.outputs]
        for key, value in raw.items():
            path = f"record.{key}"
            if key not in keys:
                self.unknown(path, key, keys)
            elif key == "path" and (not isinstance(value, str) or not value):
                self.add(path, f"must be a file path, not {value!r}")
            elif key in ("links", "foxglove"):
                if key == "links" and value == "all":
                    continue
                names = [value] if isinstance(value, str) else value
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    self.add(path, f"must be a list of outputs 'actor.port', not {value!r}")
                    continue
                for name in names:
                    if actors and name not in outputs:
                        self.add(path, f"no output {name!r}", suggest(name, outputs, "outputs"))
                values[key] = tuple(names)
            elif key == "chunk_size":
                size = parse_size(value)
                if size is None or size <= 0:
                    self.add(path, f"must be a positive size, not {value!r}", SIZE_HINT)
                values[key] = size
            elif key == "compression":
                if value not in ("none", "lz4", "zstd"):
                    self.add(path, f"must be none, lz4 or zstd, not {value!r}")
                values[key] = str(value)
            elif key == "policy":
                if value not in ("block", "drop_oldest"):
                    self.add(path, f"must be block or drop_oldest, not {value!r}")
                values[key] = Policy(value) if value in ("block", "drop_oldest") else None
            elif key == "capacity":
                values[key] = self.number(path, value, "an integer >= 1")
            elif key == "start":
                if not isinstance(value, bool):
                    self.add(path, f"must be true or false, not {value!r}")
                values[key] = value if isinstance(value, bool) else None
            else:
                values[key] = value
        return RecordSpec(**{k: v for k, v in values.items() if v is not None})

    def store_setting(self, path: str, value: object, values: dict[str, Any]) -> None:
        """``store: {path: DIR, size: 1GB}`` (or ``store_path: DIR``): the store on disk."""
        raw = {"path": value} if path.endswith("store_path") else value
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
            self.add(path, f"must be {{path: DIR, size: SIZE}}, not {value!r}")
            return
        for key in raw:
            if key not in ("path", "size"):
                self.unknown(f"{path}.{key}", key, ("path", "size"))
        values["store_path"] = str(Path(raw["path"]).expanduser().absolute())
        if "size" in raw:
            size = parse_size(raw["size"])
            if size is None or size <= 0:
                self.add(f"{path}.size", f"must be a positive size, not {raw['size']!r}", SIZE_HINT)
            values["store_size"] = size

    def connections(self, raw: object) -> list[LinkSpec]:
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.add("connections", f"must be a mapping, not {type(raw).__name__}")
            return []
        links: list[LinkSpec] = []
        seen: set[tuple[str, str, str, str]] = set()
        for key, value in raw.items():
            path = f"connections.{key}"
            src = self.endpoint(path, key, "output", self.line(path))
            dests, extra = self.link_value(path, value)
            for text, line in dests:
                dst = self.endpoint(path, text, "input", line)
                if src is None or dst is None:
                    continue
                if (*src, *dst) in seen:
                    self.add(path, f"duplicate link {key}->{text}", at=line)
                    continue
                seen.add((*src, *dst))
                links.append(
                    LinkSpec(src=src[0], src_port=src[1], dst=dst[0], dst_port=dst[1], **extra)
                )
        return links

    def endpoint(self, key: str, text: object, side: str, at: int | None) -> tuple[str, str] | None:
        actor, dot, port = text.partition(".") if isinstance(text, str) else ("", "", "")
        if not (actor and dot and port):
            self.add(key, f"{side} must be written 'actor.port', not {text!r}", at=at)
            return None
        if actor not in self.classes:
            self.add(key, f"unknown actor {actor!r}", suggest(actor, self.classes, "actors"), at)
            return None
        cls = self.classes[actor]
        if cls is None:
            return None  # already reported
        ports = self.outputs[actor] if side == "output" else cls.declared_inputs()
        if port not in ports and getattr(cls, "open_ports", False):
            named = self.named_ports.setdefault((actor, side), [])
            if port not in named:
                named.append(port)
            return actor, port
        if port not in ports:
            message = f"actor {actor!r} ({self.targets[actor]}) has no {side} {port!r}"
            self.add(key, message, suggest(port, ports, f"{side}s"), at)
            return None
        return actor, port

    def link_value(
        self, path: str, value: object
    ) -> tuple[list[tuple[object, int | None]], dict[str, Any]]:
        extra: dict[str, Any] = {}
        base = path
        if isinstance(value, dict):
            for key in value:
                if key not in LINK_KEYS:
                    self.unknown(f"{path}.{key}", key, LINK_KEYS)
            if "policy" in value:
                extra["policy"] = self.choice(f"{path}.policy", value["policy"], Policy)
            if "capacity" in value:
                extra["capacity"] = self.number(
                    f"{path}.capacity", value["capacity"], "an integer >= 1"
                )
            extra = {k: v for k, v in extra.items() if v is not None}
            if "to" not in value:
                self.add(path, "needs 'to:' with the destinations", "e.g. {to: [sink.frames]}")
                return [], extra
            base, value = f"{path}.to", value["to"]
        if isinstance(value, str):
            return [(value, self.line(base))], extra
        if isinstance(value, list):
            return [(v, self.line(f"{base}[{i}]")) for i, v in enumerate(value)], extra
        self.add(base, f"destinations must be 'actor.port' or a list of them, not {value!r}")
        return [], extra


def parse_size(value: object) -> int | None:
    """Bytes from an int or a string such as ``256MB``, ``1GiB`` or ``512k``; None if invalid.

    As in coreutils, ``kB``/``MB``/``GB``/``TB`` are powers of 1000, while ``KiB``/``MiB``/...
    and bare ``k``/``M``/``G``/``T`` are powers of 1024.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if not isinstance(value, str):
        return None
    match = _SIZE.fullmatch(value.strip().replace("_", ""))
    if match is None:
        return None
    number, prefix, binary, byte = match.groups()
    if binary and not prefix:
        return None
    power = "kmgt".index(prefix.lower()) + 1 if prefix else 0
    base = 1000 if byte and not binary else 1024
    return int(float(number) * base**power)
