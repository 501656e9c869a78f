"""``plexa ctl NAME COMMAND``: one command to a running pipeline, answered fast.

:func:`plexa.edges.cli.main` hands ``ctl`` here before it imports the rest of the command
line: this path loads only zmq, msgspec, the protocol and the run record reader (no typer,
no rich, no numpy), so ``plexa ctl NAME status`` answers in a few tens of milliseconds.
Every command is described once, in :data:`COMMANDS`: the parser, ``--help`` and the
arity checks all read that table. A later command is added with one :class:`CtlCommand`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["COMMANDS", "CtlCommand", "CtlUsage", "main", "parse", "parse_value"]


@dataclass(frozen=True)
class CtlCommand:
    """One ``plexa ctl`` command: its syntax, what it does and an example."""

    name: str
    """The command (the protocol's command name)."""
    syntax: str
    """What follows the command: ``ACTOR KEY VALUE``; ``[ACTOR]`` when optional."""
    summary: str
    """One line: what it does."""
    example: str
    """A complete example, after ``plexa ctl NAME``."""
    min_args: int = 0
    """Positional arguments it needs after the command."""
    max_args: int | None = 0
    """Positional arguments it accepts (None: any number)."""


def _cmd(name: str, syntax: str, summary: str, example: str = "") -> CtlCommand:
    words = syntax.split()
    required = sum(1 for w in words if not w.startswith("["))
    return CtlCommand(
        name,
        syntax,
        summary,
        f"{name} {example}".strip(),
        required,
        None if "..." in syntax else len(words),
    )


COMMANDS: dict[str, CtlCommand] = {
    c.name: c
    for c in (
        _cmd("status", "", "actors and links as tables (--json: the status document)"),
        _cmd("setup", "", "set every actor up (after `plexa server --hold`)"),
        _cmd("run", "[ACTOR]", "start running (every actor, or one)", "camera"),
        _cmd("pause", "[ACTOR]", "pause at the next safe point", "traces"),
        _cmd("resume", "[ACTOR]", "resume paused actors", "traces"),
        _cmd("stop", "[ACTOR]", "stop and drain (the run stays up; `run` starts it again)"),
        _cmd("abort", "[ACTOR]", "abort the current work; the partial result is reported", "fit"),
        _cmd("quit", "", "stop everything and end the run"),
        _cmd("kill", "ACTOR", "SIGKILL one actor (its restart policy applies)", "traces"),
        _cmd("revive", "ACTOR", "start a failed or killed actor again", "traces"),
        _cmd("set", "ACTOR KEY VALUE", "set an option at the next safe point", "traces n_rois 32"),
        _cmd("invoke", "ACTOR METHOD [ARG...]", "call a @plexa.command method", "fit best 3"),
        _cmd("report", "", "the failure report: per actor, restarts and failures with tracebacks"),
        _cmd("logs", "[LINES]", "the last LINES merged log lines (default 100)", "20"),
        _cmd("snapshot", "", "config, status, recent logs and latest results (JSON)"),
        _cmd("ping", "", "check that the nexus answers; prints the round trip"),
        _cmd("record", "start|stop [ACTOR.PORT...]", "record outputs to MCAP, or stop", "start"),
        _cmd("launch", "MODULE [NAME]", "start a worker job (--config FILE: its config, JSON "
             "or YAML; docs/jobs.md)", "plexa.examples.job_http web"),
        _cmd("jobs", "", "the worker jobs: guid, port, module, state, pid, restarts"),
    )
}
"""Every ``plexa ctl`` command, in the order ``--help`` lists them."""

_OPTIONS = """options (anywhere after ctl):
  --json          print the reply as a plain JSON document (status: as `plexa run --json`)
  --timeout S     seconds to wait for the reply (default 30)
  --config FILE   launch: the job's configuration (JSON or YAML), written to its stdin
  --to FILE       record start: the file to write (default: the run's, or NAME-TIME.mcap)
  --host H        the run's host, when NAME is the path of a copy of its run record
                  (a run served with plexa server --bind; see docs/security.md)
  --force         kill even when that ends the run (restart: never under on_failure: stop)
  -h, --help      show this help
VALUE and ARG are read as JSON when they parse (3, 0.5, true, [1, 2], "text"), else as text."""


class CtlUsage(Exception):
    """A ``plexa ctl`` command line that does not parse (exit status 2)."""


@dataclass(frozen=True)
class CtlArgs:
    """A parsed ``plexa ctl`` command line."""

    name: str
    command: str
    args: tuple[str, ...]
    as_json: bool = False
    timeout: float = 30.0
    force: bool = False
    host: str | None = None
    config: str | None = None
    """``launch --config FILE``."""
    to: str | None = None
    """``record start --to FILE``."""


def usage() -> str:
    """The help text: every command with its syntax, what it does and an example."""
    width = max(len(f"{c.name} {c.syntax}") for c in COMMANDS.values())
    lines = [
        "usage: plexa ctl NAME COMMAND [ARGS] [--json] [--timeout S] [--force] [--host H] "
        "[--config FILE] [--to FILE]",
        "",
        "Send one command to the running pipeline NAME: its run name or id (see plexa list),",
        "or the path of a copy of its run record (a remote run, with --host).",
        "Exit status: 0 done, 1 refused or no such run, 2 bad command line.",
        "",
        "commands:",
    ]
    for c in COMMANDS.values():
        lines.append(f"  {f'{c.name} {c.syntax}'.strip():{width}}  {c.summary}")
    lines += ["", "examples:"]
    lines += [f"  plexa ctl imaging {c.example}" for c in COMMANDS.values() if c.example != c.name]
    lines += ["  plexa ctl imaging status --json", "", _OPTIONS]
    return "\n".join(lines)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def parse(argv: list[str]) -> CtlArgs:
    """Parse the words after ``plexa ctl``; raises :class:`CtlUsage` with the reason."""
    words: list[str] = []
    flags: dict[str, Any] = {"as_json": False, "timeout": 30.0, "force": False, "host": None,
                             "config": None, "to": None}  # fmt: skip
    it = iter(argv)
    rest = False
    for word in it:
        if rest or not word.startswith("-") or word == "-" or _is_number(word):
            words.append(word)
        elif word == "--":
            rest = True
        elif word == "--json":
            flags["as_json"] = True
        elif word == "--force":
            flags["force"] = True
        elif word == "--host" or word.startswith("--host="):
            flags["host"] = word.partition("=")[2] or next(it, "")
            if not flags["host"]:
                raise CtlUsage("--host needs a host name or address")
        elif word == "--config" or word.startswith("--config="):
            flags["config"] = word.partition("=")[2] or next(it, "")
            if not flags["config"]:
                raise CtlUsage("--config needs a file name")
        elif word == "--to" or word.startswith("--to="):
            flags["to"] = word.partition("=")[2] or next(it, "")
            if not flags["to"]:
                raise CtlUsage("--to needs a file name")
        elif word == "--timeout" or word.startswith("--timeout="):
            value = word.partition("=")[2] or next(it, "")
            if not _is_number(value) or float(value) <= 0:
                raise CtlUsage(f"--timeout needs a number of seconds, not {value!r}")
            flags["timeout"] = float(value)
        else:
            raise CtlUsage(f"unknown option {word!r}")
    if len(words) < 2:
        raise CtlUsage("give a run name and a command: plexa ctl NAME COMMAND")
    name, command, args = words[0], words[1], tuple(words[2:])
    spec = COMMANDS.get(command)
    if spec is None:
        raise CtlUsage(f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
    form = f"plexa ctl {name} {command} {spec.syntax}".strip()
    if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
        extra = " takes no arguments" if spec.max_args == 0 else ": wrong number of arguments"
        raise CtlUsage(f"{command}{extra} ({form}); got {' '.join(args) or 'none'}")
    if command == "logs" and args and not args[0].isdigit():
        raise CtlUsage(f"logs takes a number of lines, not {args[0]!r}")
    if command == "record" and args[0] not in ("start", "stop"):
        raise CtlUsage(f"record takes start or stop, not {args[0]!r} ({form})")
    if flags["force"] and command != "kill":
        raise CtlUsage("--force applies to kill only")
    if flags["config"] is not None and command != "launch":
        raise CtlUsage("--config applies to launch only")
    if flags["to"] is not None and (command != "record" or args[0] != "start"):
        raise CtlUsage("--to applies to record start only")
    return CtlArgs(name, command, args, **flags)


def parse_value(word: str) -> Any:
    """A command-line value: JSON when it parses (``3``, ``[1, 2]``, ``true``), else the text."""
    try:
        return json.loads(word)
    except ValueError:
        return word


def request_of(a: CtlArgs) -> tuple[str, str | None, dict[str, Any]]:
    """The protocol command, the actor and the arguments of a parsed command line."""
    if a.command == "set":
        return "set", a.args[0], {"key": a.args[1], "value": parse_value(a.args[2])}
    if a.command == "invoke":
        args = [parse_value(w) for w in a.args[2:]]
        return "invoke", a.args[0], {"method": a.args[1], "args": args, "timeout_s": a.timeout}
    if a.command == "record":  # the nexus's, a recorder or not yet (see docs/recording.md)
        where = os.path.abspath(a.to) if a.to else None  # from here, not the nexus's folder
        record = {"action": a.args[0], "links": list(a.args[1:]), "path": where}
        return "record", None, {**record, "timeout_s": a.timeout}
    if a.command == "logs":
        return "logs", None, {"lines": int(a.args[0]) if a.args else 100}
    if a.command == "launch":
        launch: dict[str, Any] = {"module": a.args[0], "name": a.args[1] if len(a.args) > 1 else ""}
        if a.config is not None:
            launch["config"] = _read_config(a.config)
        return "launch", None, launch
    if a.command == "jobs":
        return "jobs", None, {}
    return a.command, (a.args[0] if a.args else None), {}


def _read_config(path: str) -> Any:
    """A job's configuration file: JSON, or YAML (a superset); raises CtlUsage if unreadable."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise CtlUsage(f"--config {path}: {exc}") from None


def _kill_ends_run(client: Any, actor: str) -> bool:
    """True when killing ``actor`` ends the run: it never restarts and failures stop the run."""
    config = client.request("snapshot")["config"]
    spec = config["actors"].get(actor)
    if spec is None:
        return False
    return bool(spec.get("restart") == "never" and config["settings"].get("on_failure") == "stop")


def render(command: str, value: Any, elapsed: float, out: TextIO) -> None:
    """Print a successful reply for a person: something meaningful, never ``None``."""
    if command == "status":
        from plexa.edges.tables import render_status

        out.write(render_status(value) + "\n")
    elif command == "jobs":
        cols = ("name", "guid", "port", "module", "state", "pid", "restarts", "session", "reason")
        rows = [[str(job.get(c) if job.get(c) is not None else "-") for c in cols] for job in value]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        for row in [list(cols), *rows]:
            line = "  ".join(w.ljust(n) for w, n in zip(row, widths, strict=True))
            out.write(line.rstrip() + "\n")
    elif command == "record" and isinstance(value, dict):
        doing = f"stopped ({value['error']})" if value.get("error") else "recording"
        out.write(
            f"{doing}: {value['written']} messages ({value['bytes'] / 1e6:.1f} MB), "
            f"{value['dropped']} dropped, {value['not_written']} not written -> {value['path']}\n"
        )
    elif command == "ping":
        out.write(f"{value} ({elapsed * 1e3:.1f} ms)\n")
    elif command == "logs":
        from plexa.nexus.logs import format_log

        out.writelines(format_log(entry) + "\n" for entry in value)
    elif isinstance(value, dict) and isinstance(value.get("run"), str) and "actors" in value:
        actors = ", ".join(f"{n} {s}" for n, s in value["actors"].items())
        out.write(f"run {value['run']}: {actors}\n")
    elif value is None:
        out.write("ok\n")
    elif isinstance(value, str):
        out.write(value + "\n")
    else:
        out.write(json.dumps(value, indent=2, default=str) + "\n")


def main(argv: list[str]) -> int:
    """Run ``plexa ctl`` with the words after ``ctl``; returns the exit status."""
    if not argv or any(w in ("-h", "--help") for w in argv):
        print(usage())
        return 0
    try:
        a = parse(argv)
    except CtlUsage as exc:
        sys.stderr.write(f"error: {exc}\nsee: plexa ctl --help\n")
        return 2
    from plexa.edges.client import connect
    from plexa.errors import PlexaError

    try:
        client = connect(a.name, host=a.host, timeout=a.timeout)
    except PlexaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    try:
        command, actor, args = request_of(a)
    except CtlUsage as exc:
        client.close()
        sys.stderr.write(f"error: {exc}\n")
        return 2
    with client:
        try:
            if a.command == "kill" and not a.force and actor and _kill_ends_run(client, actor):
                sys.stderr.write(
                    f"error: {actor!r} has restart: never and the run has on_failure: stop, so "
                    f"killing it ends the run; add --force to kill it anyway\n"
                )
                return 1
            t0 = time.perf_counter()
            resp = client.request_raw(command, actor, **args)
            elapsed = time.perf_counter() - t0
        except PlexaError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    if not resp.ok:
        sys.stderr.write(f"refused: {resp.error}\n")
        if resp.traceback:
            sys.stderr.write(resp.traceback.rstrip() + "\n")
        return 1
    if a.as_json:
        sys.stdout.write(json.dumps(resp.value, default=str) + "\n")
    else:
        render(a.command, resp.value, elapsed, sys.stdout)
    return 0
