"""Pipeline files: YAML in, a validated :class:`~plexa.core.spec.PipelineSpec` out.

Every problem in a file is reported at once, each with its line, its dotted key
(``actors.camera.options.rate_hz``) and, where one exists, a suggested fix. plexa's own
spelling loads, and so does improv's (``package:`` + ``class:``, extra keys as options).
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import importlib
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from plexa.core.actor import Actor
from plexa.core.options import accepts
from plexa.core.spec import (
    ActorSpec,
    LinkSpec,
    OnFailure,
    PipelineSpec,
    Policy,
    RecordSpec,
    Restart,
    Settings,
)
from plexa.errors import ConfigError, ConfigIssue

__all__ = ["format_issues", "load", "loads", "resolve_class", "validate"]

E = TypeVar("E", bound=enum.StrEnum)

TOP_KEYS = ("name", "settings", "actors", "connections", "record")
ACTOR_KEYS = (
    "class",
    "options",
    "restart",
    "max_restarts",
    "restart_window",
    "backoff",
    "progress_delta",
    "improved_delta",
    "checkpoint_delta",
    "workers",
)
IMPROV_KEYS = ("package", *ACTOR_KEYS)
LINK_KEYS = ("to", "policy", "capacity")
SETTING_KEYS: tuple[str, ...] = (*Settings.__struct_fields__, "store")
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(i?)(b?)", re.IGNORECASE)
_SIZE_HINT = "give bytes, or a size such as '256MB', '1GiB' or '512k'"
_PATH_HINT = "check the spelling, and that its directory is on PYTHONPATH"

_ACTOR_DEFAULTS = ActorSpec(name="", target="")
_NUMBERS: dict[str, tuple[type | types.UnionType, Callable[[Any], bool]]] = {
    "a positive number": (int | float, lambda x: x > 0),
    "a number >= 0": (int | float, lambda x: x >= 0),
    "an integer >= 0": (int, lambda x: x >= 0),
    "an integer >= 1": (int, lambda x: x >= 1),
}


def load(path: str | os.PathLike[str]) -> PipelineSpec:
    """Read and validate the pipeline file at ``path``.

    Raises :class:`~plexa.errors.ConfigError` listing every problem found, including an
    unreadable file or a YAML syntax error.
    """
    spec, issues = _check_file(path)
    if spec is None:
        raise ConfigError(issues)
    return spec


def loads(text: str, source: str = "<string>") -> PipelineSpec:
    """Validate the pipeline in ``text``; ``source`` names it in messages and the spec.

    Raises :class:`~plexa.errors.ConfigError` listing every problem found.
    """
    spec, issues = _check(text, source)
    if spec is None:
        raise ConfigError(issues)
    return spec


def validate(path: str | os.PathLike[str]) -> list[ConfigIssue]:
    """Every problem in the pipeline file at ``path``; an empty list means it is valid."""
    return _check_file(path)[1]


def resolve_class(target: str) -> type:
    """Import the class named by ``target``: ``pkg.module:Class`` or ``pkg.module.Class``.

    Raises :class:`ImportError` when the module cannot be imported, :class:`AttributeError`
    when it has no such class (both say what to check), :class:`TypeError` when the name is
    not a class.
    """
    try:
        return _locate(target)
    except _Unresolved as exc:
        text = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        raise exc.kind(text) from exc.__cause__


def format_issues(issues: Sequence[ConfigIssue]) -> str:
    """Human text for ``issues``: one per line, then a count (``2 errors in bad.yaml``)."""
    if not issues:
        return "no errors"
    files = sorted({i.file for i in issues})
    noun = "error" if len(issues) == 1 else "errors"
    lines = [str(i) for i in issues]
    lines.append(f"{len(issues)} {noun} in {', '.join(files)}")
    return "\n".join(lines)


def _check_file(path: str | os.PathLike[str]) -> tuple[PipelineSpec | None, list[ConfigIssue]]:
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [ConfigIssue(source, None, "(file)", f"cannot read the file: {reason}")]
    folder = str(Path(source).resolve().parent)
    added = folder not in sys.path
    if added:  # actor modules next to the file are found (as improv does; the nexus puts
        sys.path.insert(0, folder)  # the same folder first on each actor's path)
    try:
        return _check(text, source)
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


class _Tree:
    """Builds plain data from YAML nodes, recording each key's line and every duplicate."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[str, int] = {}
        self.duplicates: list[ConfigIssue] = []

    def build(self, node: yaml.Node, path: str) -> Any:
        if node.tag not in (_MAP, _SEQ):  # scalars and tagged collections: as SafeLoader does
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, yaml.MappingNode):
            own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
            self.loader.flatten_mapping(node)
            merged = len(node.value) - own  # entries pulled in by ``<<:`` come first
            out: dict[str, Any] = {}
            from_merge: set[str] = set()
            for index, (knode, vnode) in enumerate(node.value):
                key = str(self.loader.construct_object(knode, deep=True))
                sub = f"{path}.{key}" if path else key
                line = knode.start_mark.line + 1
                if key in out and key not in from_merge:
                    first = self.lines.get(sub)
                    hint = f"first defined on line {first}" if first else ""
                    self.duplicates.append(
                        ConfigIssue(self.source, line, sub, f"duplicate key {key!r}", hint)
                    )
                    continue
                from_merge.discard(key)
                if index < merged:
                    from_merge.add(key)
                self.lines[sub] = line
                out[key] = self.build(vnode, sub)
            return out
        items = []
        for index, item in enumerate(node.value):
            self.lines[f"{path}[{index}]"] = item.start_mark.line + 1
            items.append(self.build(item, f"{path}[{index}]"))
        return items


def _parse(text: str, source: str) -> tuple[Any, dict[str, int], list[ConfigIssue]]:
    loader = yaml.SafeLoader(text)
    tree = _Tree(loader, source)
    try:
        node = loader.get_single_node()
        data = tree.build(node, "") if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        issue = ConfigIssue(source, line, "(yaml)", f"YAML syntax error: {problem}")
        return None, {}, [issue]
    finally:
        loader.dispose()
    return data, tree.lines, tree.duplicates


def _check(text: str, source: str) -> tuple[PipelineSpec | None, list[ConfigIssue]]:
    data, lines, issues = _parse(text, source)
    if data is None and issues:
        return None, issues
    check = _Checker(source, lines, issues)
    if not isinstance(data, dict):
        check.add("(file)", "a pipeline file must be a mapping with 'actors:'", at=1)
        return None, check.issues
    for key in data:
        if key not in TOP_KEYS:
            check.unknown(key, key, TOP_KEYS)
    default_name = Path(source).stem if not source.startswith("<") else "pipeline"
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        check.add("name", f"must be a non-empty string, not {name!r}")
    settings = check.settings(data.get("settings"))
    actors = check.actors(data.get("actors"))
    links = check.connections(data.get("connections"))
    actors = check.with_named_ports(actors)
    record = check.record(data.get("record"), actors)
    if record is None and settings.use_watcher:  # improv's spelling of "record: all"
        record = RecordSpec()
    if check.issues:
        return None, check.issues
    spec = PipelineSpec(
        name=str(name),
        actors=actors,
        links=tuple(links),
        settings=settings,
        source=source,
        record=record,
    )
    return spec, []


def _suggest(word: object, choices: Iterable[str], listing: str = "") -> str:
    """``did you mean 'x'?`` for the nearest choice, then ``listing: a, b`` when asked."""
    names = list(choices)
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else ""
    if listing:
        hint = f"{hint} {listing}: {', '.join(names) or 'none'}".strip()
    return hint


class _Checker:
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
        hint = _suggest(word, valid) or f"valid keys: {', '.join(valid)}"
        self.add(key, f"unknown key {word!r}", hint)

    def choice(self, key: str, value: object, kind: type[E]) -> E | None:
        names = [member.value for member in kind]
        if isinstance(value, str) and value in names:
            return kind(value)
        self.add(key, f"must be one of {', '.join(names)}, not {value!r}", _suggest(value, names))
        return None

    def number(self, key: str, value: object, want: str) -> Any:
        kind, ok = _NUMBERS[want]
        if isinstance(value, kind) and not isinstance(value, bool) and ok(value):
            return value
        self.add(key, f"must be {want}, not {value!r}")
        return None

    def settings(self, raw: object) -> Settings:
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
                size = _parse_size(value)
                if size is None or size <= 0:
                    self.add(path, f"must be a positive size, not {value!r}", _SIZE_HINT)
                values[key] = size
            elif key in ("store", "store_path"):
                self.store_setting(path, value, values)
            elif key in ("control", "output"):
                if value is not None and not isinstance(value, str):
                    self.add(path, f"must be a zmq endpoint string or null, not {value!r}")
                values[key] = value
            elif key == "on_failure":
                values[key] = self.choice(path, value, OnFailure)
            elif key in ("metrics", "use_watcher", "use_hdd"):
                if not isinstance(value, bool):
                    self.add(path, f"must be true or false, not {value!r}")
                values[key] = value if isinstance(value, bool) else None
            else:
                want = "a number >= 0" if key == "drain_timeout" else "a positive number"
                got = self.number(path, value, want)
                values[key] = None if got is None else float(got)
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
                        self.add(path, f"no output {name!r}", _suggest(name, outputs, "outputs"))
                values[key] = tuple(names)
            elif key == "chunk_size":
                size = _parse_size(value)
                if size is None or size <= 0:
                    self.add(path, f"must be a positive size, not {value!r}", _SIZE_HINT)
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
            size = _parse_size(raw["size"])
            if size is None or size <= 0:
                self.add(
                    f"{path}.size", f"must be a positive size, not {raw['size']!r}", _SIZE_HINT
                )
            values["store_size"] = size

    def actors(self, raw: object) -> dict[str, ActorSpec]:
        if not isinstance(raw, dict) or not raw:
            what = "is missing" if raw is None else f"must be a non-empty mapping, not {raw!r}"
            self.add("actors", f"'actors' {what}", "e.g. actors: {camera: {class: 'pkg.mod:Cls'}}")
            return {}
        specs = {}
        for name, entry in raw.items():
            spec = self.actor(name, entry)
            if spec is not None:
                specs[name] = spec
        return specs

    def actor(self, name: str, entry: object) -> ActorSpec | None:
        path = f"actors.{name}"
        self.classes[name] = None
        if not name or "." in name:
            self.add(path, f"actor name {name!r} must be non-empty and contain no '.'")
        if not isinstance(entry, dict):
            self.add(path, "must be a mapping with a 'class'", "e.g. {class: 'pkg.module:Class'}")
            return None
        options: dict[str, Any] = {}
        paths: dict[str, str] = {}
        raw_options = entry.get("options")
        if isinstance(raw_options, dict):
            options.update(raw_options)
            paths.update({k: f"{path}.options.{k}" for k in raw_options})
        elif raw_options is not None:
            self.add(f"{path}.options", f"must be a mapping, not {type(raw_options).__name__}")
        cls_name = entry.get("class")
        if "package" in entry:  # improv's spelling: extra keys are options too
            package = entry["package"]
            for key, value in entry.items():
                if key not in IMPROV_KEYS:
                    options[key] = value
                    paths[key] = f"{path}.{key}"
            if not isinstance(package, str) or not package:
                self.add(f"{path}.package", f"must be a module name, not {package!r}")
            target = f"{package}:{cls_name}"
        else:
            for key in entry:
                if key not in ACTOR_KEYS:
                    self.unknown(f"{path}.{key}", key, ACTOR_KEYS)
            target = str(cls_name)

        def get(key: str) -> Any:
            return entry.get(key, getattr(_ACTOR_DEFAULTS, key))

        restart = self.choice(f"{path}.restart", get("restart"), Restart)
        max_restarts = self.number(f"{path}.max_restarts", get("max_restarts"), "an integer >= 0")
        window = self.number(f"{path}.restart_window", get("restart_window"), "a positive number")
        backoff = self.number(f"{path}.backoff", get("backoff"), "a number >= 0")
        service = {
            key: self.number(f"{path}.{key}", get(key), "a number >= 0")
            for key in ("progress_delta", "improved_delta", "checkpoint_delta")
        }
        workers = self.number(f"{path}.workers", get("workers"), "an integer >= 0")
        if not isinstance(cls_name, str) or not cls_name:
            hint = "e.g. class: 'pkg.module:Class'"
            self.add(path if cls_name is None else f"{path}.class", "needs a 'class'", hint)
            return None
        cls = self.import_class(f"{path}.class", target)
        if cls is None:
            return None
        self.classes[name] = cls
        try:
            self.outputs[name] = cls.outputs_for(options)
        except Exception as exc:  # a player whose file is missing, say
            self.add(f"{path}.options", f"cannot tell the outputs of {target}: {exc}")
            self.outputs[name] = ()
        target = self.targets[name] = f"{cls.__module__}:{cls.__qualname__}"
        self.check_options(name, options, paths)
        if restart is None or max_restarts is None or window is None or backoff is None:
            return None
        return ActorSpec(
            name=name,
            target=target,
            options=options,
            restart=restart,
            max_restarts=max_restarts,
            restart_window=float(window),
            backoff=float(backoff),
            progress_delta=float(service["progress_delta"] or 0.0),
            improved_delta=float(service["improved_delta"] or 0.0),
            checkpoint_delta=float(service["checkpoint_delta"] or 0.0),
            workers=int(workers or 0),
            inputs=cls.declared_inputs(),
            outputs=self.outputs[name],
            line=self.line(path),
        )

    def import_class(self, key: str, target: str) -> type[Actor] | None:
        try:
            cls = _locate(target)
        except _Unresolved as exc:
            self.add(key, exc.message, exc.hint)
            return None
        if not issubclass(cls, Actor):
            self.add(key, f"{target!r} is not a plexa actor", "derive it from plexa.Actor")
            return None
        return cls

    def check_options(self, name: str, options: dict[str, Any], paths: dict[str, str]) -> None:
        cls, target = self.classes[name], self.targets[name]
        assert cls is not None
        if next(k for k in cls.__mro__ if "_plexa_create" in vars(k)) is not Actor:
            return  # an adapter (improv's) hands options to its own constructor
        try:
            params = list(cls.setup_signature().parameters.values())
        except (TypeError, ValueError):
            return
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        static = isinstance(inspect.getattr_static(cls, "setup"), staticmethod)
        if params and params[0].kind in positional and not static:
            params = params[1:]  # self
        named = {p.name: p for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        named = {n: p for n, p in named.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        try:
            hints = typing.get_type_hints(cls.setup)
        except Exception:
            hints = {}
        for key, value in options.items():
            param = named.get(key)
            if param is None:
                if not open_ended:
                    hint = _suggest(key, named, "options")
                    self.add(paths[key], f"unknown option {key!r} for {target}", hint)
                continue
            ann = hints.get(key)
            if ann is None or (value is None and param.default is None):
                continue
            if accepts(ann, value) is False:
                want = inspect.formatannotation(ann)
                got = f"{type(value).__name__} {value!r}"
                self.add(paths[key], f"option {key!r} of {target} must be {want}, not {got}")
        for param in named.values():
            if param.default is inspect.Parameter.empty and param.name not in options:
                hint = f"add it under options: {{{param.name}: ...}}"
                self.add(f"actors.{name}.options", f"{target} needs option {param.name!r}", hint)

    def with_named_ports(self, actors: dict[str, ActorSpec]) -> dict[str, ActorSpec]:
        """The actor specs with the ports that only connections named (``open_ports``)."""
        out = dict(actors)
        for (actor, side), names in self.named_ports.items():
            aspec = out.get(actor)
            if aspec is None:
                continue
            if side == "input":
                aspec = msgspec.structs.replace(aspec, inputs=(*aspec.inputs, *names))
            else:
                aspec = msgspec.structs.replace(aspec, outputs=(*aspec.outputs, *names))
            out[actor] = aspec
        return out

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
            self.add(key, f"unknown actor {actor!r}", _suggest(actor, self.classes, "actors"), at)
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
            self.add(key, message, _suggest(port, ports, f"{side}s"), at)
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


class _Unresolved(Exception):
    """A target that could not be resolved: what went wrong, what to try, what to raise."""

    def __init__(self, kind: type[Exception], message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def _locate(target: str) -> type:
    module_name, colon, attr = target.partition(":")
    if not colon:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise _Unresolved(
            ImportError, f"{target!r} is not a class path", "write it as 'package.module:Class'"
        )
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name + ".").startswith(missing + "."):
            message = f"cannot import module {module_name!r}: no module named {missing!r}"
            raise _Unresolved(ImportError, message, _PATH_HINT) from exc
        message = f"importing {module_name!r} failed: {exc}"
        raise _Unresolved(ImportError, message, f"install {missing!r}") from exc
    except Exception as exc:
        message = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise _Unresolved(ImportError, message) from exc
    owner = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            actors = [n for n in names if _is_actor_class(getattr(obj, n, None))]
            hint = _suggest(part, names)
            if actors:
                hint = f"{hint} actors there: {', '.join(actors)}".strip()
            raise _Unresolved(AttributeError, f"{owner!r} has no class {part!r}", hint)
        obj, owner = getattr(obj, part), f"{owner}.{part}"
    if not isinstance(obj, type):
        raise _Unresolved(TypeError, f"{target!r} is a {type(obj).__name__}, not a class")
    return obj


def _is_actor_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Actor) and obj is not Actor


def _parse_size(value: object) -> int | None:
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
