"""Runs, live or finished: ``plexa list``, ``plexa logs``, ``plexa report``.

A live run is asked through its control endpoint; a finished one is read from the files it
left in the log directory (:mod:`plexa.nexus.history`), the newest of that name.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Annotated, Any

import typer

from plexa.errors import PlexaError

__all__ = ["list_runs", "logs", "parse_log_line", "report"]

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\S+) ([A-Z]+|\d+) ([^:]*): (.*)$", re.S
)


def parse_log_line(line: str) -> dict[str, Any] | None:
    """A log file line back as the entry ``plexa ctl NAME logs --json`` gives for a live run:
    ``t``, ``actor``, ``level``, ``logger``, ``message`` (None for a continuation line)."""
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    stamp, millis, actor, level, logger, message = match.groups()
    t = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    number = int(level) if level.isdigit() else _LEVELS.get(level, 0)
    return {"t": t, "actor": actor, "level": number, "logger": logger, "message": message}


def _entries(lines: list[str]) -> list[dict[str, Any]]:
    """Entries of log lines; a line that does not start an entry continues the one before
    (a traceback)."""
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = parse_log_line(line)
        if entry is not None:
            entries.append(entry)
        elif entries:
            entries[-1]["message"] += "\n" + line.rstrip("\n")
    return entries


def _fail(message: str) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(1)


def _live(name: str) -> Any:
    """A client for the live run ``name``, or None when none is alive by that name."""
    from plexa.edges.client import connect

    try:
        return connect(name)
    except PlexaError:
        return None


def _finished(name: str) -> Any:
    from plexa.nexus.history import latest

    run = latest(name)
    if run is None:
        raise _fail(f"no run named {name!r}, running or finished (plexa list --all)")
    return run


def _follow(client: Any, lines: int) -> None:
    from plexa.nexus.logs import format_log

    snap = client.subscribe(("log", "run"))
    for entry in snap["logs"][-lines:]:
        print(format_log(entry), flush=True)
    try:
        while True:
            for event in client.events(timeout=1.0):
                if event.kind == "log" and event.seq > snap["seq"]:
                    print(format_log(event.data), flush=True)
            try:
                client.request("ping", timeout=2.0)
            except PlexaError:
                return
    except KeyboardInterrupt:
        return


def logs(
    name: Annotated[str, typer.Argument(help="Run name or id (the newest run of that name).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records (a live run).")
    ] = False,
    lines: Annotated[int, typer.Option(help="How many of the last records (0: all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Print a run's merged log: a running run's, else the newest finished run's file."""
    from plexa.nexus.logs import format_log

    client = _live(name)
    if client is not None:
        with client:
            if follow:
                _follow(client, lines)
                return
            entries = client.request("logs", lines=lines or 10**9)
    else:
        run = _finished(name)
        if run.log is None:
            raise _fail(f"run {name!r} ({run.run_id}) wrote no log")
        entries = _entries(run.log.read_text().splitlines())
        entries = entries[-lines:] if lines else entries
    if as_json:
        print(json.dumps(entries))
    else:
        for entry in entries:
            print(format_log(entry))


def _print_report(doc: dict[str, Any]) -> None:
    run = doc.get("run", {})
    state = "failed" if run.get("failed") else "clean" if run.get("clean") else "recovered"
    print(f"run {run.get('name')} ({run.get('id')}): {state}")
    for name, actor in doc.get("actors", {}).items():
        print(f"  {name}: {actor.get('state')}, restarts {actor.get('restarts', 0)}")
        for failure in actor.get("failures", []):
            print(f"    {failure['kind']} in {failure['phase']}: {failure['error']}")
            if failure.get("traceback"):
                for line in failure["traceback"].rstrip().splitlines():
                    print(f"      {line}")


def report(
    name: Annotated[str, typer.Argument(help="Run name or id (the newest run of that name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report document.")] = False,
) -> None:
    """Print how a run went: per actor, its state, restarts and failures with tracebacks."""
    client = _live(name)
    if client is not None:
        with client:
            doc = client.request("report")
    else:
        run = _finished(name)
        found = run.load_report()
        if found is None:
            raise _fail(f"run {name!r} ({run.run_id}) left no report (was its nexus killed?)")
        doc = found
    if as_json:
        print(json.dumps(doc))
    else:
        _print_report(doc)


def list_runs(
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Show finished runs too, with their exit state.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List runs on this machine: live ones (and with --all, finished ones)."""
    from plexa.nexus.cleanup import list_runs as live_runs

    docs: list[dict[str, Any]] = [
        {
            "id": r.run_id,
            "name": r.name,
            "state": "alive" if r.alive else "dead",
            "pid": r.pid,
            "alive": r.alive,
            "config": r.config,
            "started": r.started,
            "log": r.record.get("log"),
            "hosts": sorted(r.record.get("hosts") or ()),
        }
        for r in live_runs()
    ]
    if show_all:
        from plexa.nexus.history import finished_runs

        seen = {d["id"] for d in docs}
        docs += [
            {
                "id": r.run_id,
                "name": r.name,
                "state": r.exit_state(),
                "pid": None,
                "alive": False,
                "config": "",
                "started": None,
                "ended": r.mtime,
                "log": str(r.log) if r.log else None,
            }
            for r in reversed(finished_runs())
            if r.run_id not in seen
        ]
    if as_json:
        print(json.dumps(docs))
        return
    if not docs:
        print("no runs" if show_all else "no live runs (plexa list --all shows finished ones)")
        return
    width = max(len(d["name"]) for d in docs)
    for d in docs:
        when = d.get("ended") or d.get("started") or 0
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else ""
        pid = f"pid {d['pid']}" if d["pid"] else ""
        hosts = f"  (hosts: {', '.join(d['hosts'])})" if d.get("hosts") else ""
        print(f"{d['id']}  {d['name']:{width}}  {d['state']:9}  {stamp:16}  {pid:10}  "
              f"{d['config'] or d['log'] or ''}{hosts}".rstrip())  # fmt: skip
