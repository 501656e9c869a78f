"""The checks of a pipeline file's ``actors:`` section: each actor's keys, its class
(imported, so a typo gets the nearest name) and its options against ``setup``'s signature.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

import msgspec

from plexa.core.actor import Actor
from plexa.core.config_checks import Checker, suggest
from plexa.core.config_ray import resources
from plexa.core.options import accepts
from plexa.core.spec import ActorSpec, Resources, Restart

__all__ = ["ACTOR_KEYS", "PipelineChecker", "Unresolved", "locate"]

ACTOR_KEYS = (
    "class",
    "host",
    "options",
    "restart",
    "max_restarts",
    "restart_window",
    "backoff",
    "progress_delta",
    "improved_delta",
    "checkpoint_delta",
    "workers",
    "resources",
)
IMPROV_KEYS = ("package", *ACTOR_KEYS)
_PATH_HINT = "check the spelling, and that its directory is on PYTHONPATH"
_ACTOR_DEFAULTS = ActorSpec(name="", target="")


class PipelineChecker(Checker):
    """A :class:`~plexa.core.config_checks.Checker` that also checks actors."""

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
        placed = resources(self, f"{path}.resources", entry.get("resources") or {})
        host = entry.get("host") or ""
        if isinstance(host, list) and host and all(isinstance(h, str) and h for h in host):
            host, also = host[0], tuple(host[1:])
        elif isinstance(host, str):
            also = ()
        else:
            self.add(f"{path}.host", f"must be a host name from hosts: (or a list), not {host!r}")
            host, also = "", ()
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
            resources=placed or Resources(),
            inputs=cls.declared_inputs(),
            outputs=self.outputs[name],
            line=self.line(path),
            host=host,
            also=also,
        )

    def import_class(self, key: str, target: str) -> type[Actor] | None:
        try:
            cls = locate(target)
        except Unresolved as exc:
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
                    hint = suggest(key, named, "options")
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


class Unresolved(Exception):
    """A target that could not be resolved: what went wrong, what to try, what to raise."""

    def __init__(self, kind: type[Exception], message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def locate(target: str) -> type:
    module_name, colon, attr = target.partition(":")
    if not colon:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise Unresolved(
            ImportError, f"{target!r} is not a class path", "write it as 'package.module:Class'"
        )
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name + ".").startswith(missing + "."):
            message = f"cannot import module {module_name!r}: no module named {missing!r}"
            raise Unresolved(ImportError, message, _PATH_HINT) from exc
        message = f"importing {module_name!r} failed: {exc}"
        raise Unresolved(ImportError, message, f"install {missing!r}") from exc
    except Exception as exc:
        message = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise Unresolved(ImportError, message) from exc
    owner = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            actors = [n for n in names if is_actor_class(getattr(obj, n, None))]
            hint = suggest(part, names)
            if actors:
                hint = f"{hint} actors there: {', '.join(actors)}".strip()
            raise Unresolved(AttributeError, f"{owner!r} has no class {part!r}", hint)
        obj, owner = getattr(obj, part), f"{owner}.{part}"
    if not isinstance(obj, type):
        raise Unresolved(TypeError, f"{target!r} is a {type(obj).__name__}, not a class")
    return obj


def is_actor_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Actor) and obj is not Actor
