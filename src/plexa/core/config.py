"""Pipeline files: YAML in, a validated :class:`~plexa.core.spec.PipelineSpec` out.

Every problem in a file is reported at once, each with its line, its dotted key
(``actors.camera.options.rate_hz``) and, where one exists, a suggested fix. plexa's own
spelling loads, and so does improv's (``package:`` + ``class:``, extra keys as options).
This module reads the YAML (keeping each key's line); the sections are checked in
:mod:`plexa.core.config_checks` and :mod:`plexa.core.config_actors`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from plexa.core.config_actors import PipelineChecker, Unresolved, locate
from plexa.core.config_hooks import check_webhooks
from plexa.core.config_hosts import check_hosts
from plexa.core.config_jobs import check_jobs
from plexa.core.spec import PipelineSpec, RecordSpec
from plexa.errors import ConfigError, ConfigIssue

__all__ = ["format_issues", "load", "loads", "resolve_class", "validate"]

TOP_KEYS = (
    "name", "settings", "actors", "connections", "record", "hosts", "tls", "webhooks", "jobs",
)  # fmt: skip
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


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
        return locate(target)
    except Unresolved as exc:
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
    check = PipelineChecker(source, lines, issues)
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
    hosts, tls, actors = check_hosts(check, data.get("hosts"), data.get("tls"), actors, source)
    webhooks = check_webhooks(check, data.get("webhooks"))
    jobs = check_jobs(check, data.get("jobs"))
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
        hosts=hosts,
        tls=tls,
        webhooks=webhooks,
        jobs=jobs,
    )
    return spec, []
