"""What ``plexa run``, ``server`` and ``replay`` share: start a run, serve clients, stop,
quit, report; without typer or rich, so that a run's nexus does not carry them.

The typer app (:mod:`plexa.edges.cli_app`) parses these commands' options, and
:mod:`plexa.edges.cli` hands it a plain ``plexa run FILE`` without loading typer (whose option
parsing imports pydantic: ~0.2 s of CPU and ~10 MB in a process that lives as long as the
run). Errors end the command with :class:`SystemExit` (exit 2: bad input; 1: an actor failed).
Rich draws the live table on a terminal and is imported only then.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from plexa.core import messages as msgs
from plexa.core.config import format_issues, load
from plexa.edges.live import EventLines
from plexa.edges.tables import ProgressRates, render_status
from plexa.errors import ConfigError, EndpointInUse, NameInUse, PlexaError, UnsafePath

__all__ = [
    "HOOKS_DRAIN_S",
    "LEVELS",
    "claim_name",
    "err",
    "load_file",
    "run_plain",
    "say",
    "serve",
]


class Stderr:
    """The command's stderr: rich on a terminal (the live table needs it), else plain lines."""

    def __init__(self) -> None:
        self._console: Any = None

    def is_terminal(self) -> bool:
        """Whether rich would draw on stderr (without importing rich when it is a file)."""
        forced = any(os.environ.get(k) for k in ("FORCE_TERMINAL", "TTY_COMPATIBLE"))
        return (forced or os.isatty(2)) and bool(self.console().is_terminal)

    def console(self) -> Any:
        """The rich console on stderr (rich is imported on first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, soft_wrap=True, highlight=False)
        return self._console

    def line(self, text: str) -> None:
        """Print one plain line (through rich once it draws, so the live table stays whole)."""
        if self._console is None:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            return
        from rich.text import Text

        self._console.print(Text(text))


err = Stderr()

LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def say(text: str) -> None:
    """A plain line on stderr (no wrapping: file:line messages stay one per line)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def load_file(file: Path) -> Any:
    try:
        return load(file)
    except ConfigError as exc:
        say(format_issues(exc.issues))
        raise SystemExit(2) from None


def status_text(status: dict[str, Any], rates: dict[str, float] | None = None) -> str:
    """The status tables as text."""
    return render_status(status, rates)


def claim_name(name: str) -> Any:
    """Claim run name ``name`` for this process (exit 2 if a live run holds it)."""
    from plexa.nexus import names

    try:
        return names.claim_name(name)
    except (NameInUse, UnsafePath) as exc:
        say(f"error: {exc}")
        raise SystemExit(2) from None


def drop(claim: Any, early: Any) -> None:
    """Undo what a run that never started held: its name, its prestarted fork server."""
    claim.release()
    if early is not None:
        early.discard()


HOOKS_DRAIN_S = 5.0
"""How long a run's end waits for its web-hooks' last deliveries."""


def run_plain(words: list[str]) -> bool:
    """Run ``plexa run FILE [--duration S] [--name NAME] [--json]`` as the typer app would,
    without loading it; False (nothing done) for any other command line, which the typer
    app then parses (and reports errors in) itself."""
    if len(words) < 2 or words[0] != "run" or words[1].startswith("-"):
        return False
    opts: dict[str, Any] = {"duration": None, "name": None, "as_json": False}
    rest = words[2:]
    while rest:
        word = rest.pop(0)
        if word == "--json":
            opts["as_json"] = True
        elif word == "--name" and rest and not rest[0].startswith("-"):
            opts["name"] = rest.pop(0)
        elif word == "--duration" and rest and _DECIMAL.fullmatch(rest[0]):
            opts["duration"] = float(rest.pop(0))
        else:
            return False
    as_json = bool(opts.pop("as_json"))
    serve(Path(words[1]), bind=None, hold=False, as_json=as_json, console=not as_json, **opts)
    return True


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def serve(
    file: Path,
    *,
    name: str | None,
    bind: str | None,
    duration: float | None,
    hold: bool,
    as_json: bool,
    console: bool,
    tui: bool = False,
    resume: bool = False,
    transform: Callable[[Any], Any] | None = None,
    until: Callable[[Any], bool] | None = None,
    attach: Callable[[str], Any] | None = None,
) -> None:
    """Shared by ``run`` and ``server``: start, serve clients, stop, quit, report.

    ``transform`` turns the loaded spec into the one to run (``--record``, ``replay``);
    the run also ends once ``until(nexus)`` is true; ``attach(name)`` is called once the
    run serves clients, and what it returns is ``close()``d when the run has stopped.
    """
    from plexa.nexus.attach import Listener
    from plexa.nexus.driver import drive
    from plexa.nexus.jobs import Jobs
    from plexa.nexus.nexus import Nexus
    from plexa.nexus.prestart import take
    from plexa.nexus.server import ControlServer

    folder = str(file.resolve().parent)
    if folder not in sys.path:  # actor modules beside the file (the nexus passes sys.path on)
        sys.path.insert(0, folder)
    spec = load_file(file)
    if transform is not None:
        try:
            spec = transform(spec)
        except PlexaError as exc:
            say(f"error: {exc}")
            raise SystemExit(2) from None
    run_name = name or spec.name
    spec = msgspec.structs.replace(spec, name=run_name)  # logs, reports, data: by run name

    def show_log(actor: str, rec: msgs.LogRecord) -> None:
        if rec.level >= (20 if console else 30):
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.t))
            level = LEVELS.get(rec.level, str(rec.level))
            err.line(f"{stamp} {actor} {level} {rec.message}")

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    claim = claim_name(run_name)  # held until the run has quit
    early = take()
    try:
        nexus = Nexus(
            spec, on_log=None if tui else show_log, resume=resume, name=run_name, prestarted=early
        )
        server = ControlServer(nexus, bind=bind)
    except EndpointInUse as exc:  # nothing started yet: no run to quit, no report to write
        drop(claim, early)
        say(f"error: {exc}")
        raise SystemExit(2) from None
    except BaseException:
        drop(claim, early)
        raise
    Jobs(nexus, spec.jobs).serve(server)  # launch, jobs; the file's jobs start with the run
    events = EventLines(spec, err.line)
    if not tui:  # failures and restarts the moment they happen, the traceback once
        nexus.attach(Listener(events))
    live: Any = None
    attached: Any = None
    hooks: Any = None
    progress_rates = ProgressRates()

    def started() -> None:
        nonlocal live, attached, hooks
        if spec.webhooks:
            from plexa.edges.webhooks import WEBHOOKS_FILE, Dispatcher

            stats = nexus.paths.run_dir / WEBHOOKS_FILE
            hooks = Dispatcher.for_hooks(run_name, spec.webhooks, stats_file=stats)
            deadline = time.monotonic() + HOOKS_DRAIN_S
            while not hooks.wait_subscribed(0) and time.monotonic() < deadline:
                nexus.poll(0.02)  # serves the subscription: the run's first events reach them
        if attach is not None:
            attached = attach(run_name)
        if not as_json and not console:
            err.line(
                f"serving {run_name!r} (run {nexus.paths.run_id}): control "
                f"{server.control_endpoint}, events {server.events_endpoint}"
            )
        if console and not tui and err.is_terminal():
            from rich.live import Live
            from rich.text import Text

            text = Text(status_text(nexus.status()))
            live = Live(text, console=err.console(), refresh_per_second=4, transient=True)
            live.start()

    def between() -> None:
        if live is not None:
            status = nexus.status()
            from rich.text import Text

            live.update(Text(status_text(status, progress_rates.update(status))))

    def ended() -> bool:
        return until is not None and until(nexus)

    try:
        if tui:
            from plexa.edges.tui import run_tui

            outcome = run_tui(server=server, hold=hold, duration=duration, until=ended)
        else:
            outcome = drive(
                nexus,
                hold=hold,
                duration=duration,
                until=ended,
                started=started,
                between=between,
            )
    finally:
        if live is not None:
            live.stop()
        if attached is not None:
            attached.close()
        if hooks is not None:  # the run's last events (stopped, a failure) still go out
            hooks.drain(HOOKS_DRAIN_S)
            hooks.close()
            for line in hooks.summary():
                say(line)
        server.close()
        claim.release()
    report, summary, interrupted = outcome.report, outcome.status, outcome.interrupted
    if outcome.error is not None and not nexus.failed:
        say(f"error: {outcome.error}")
    for failure in report.failures:  # one line each; the traceback unless it was shown live
        shown = events.printed_traceback(failure.actor, failure.error)
        say(str(failure).splitlines()[0] if shown else str(failure))
    if report.terminated or report.killed:
        err.line(f"stop ladder: SIGTERM {list(report.terminated)}, SIGKILL {list(report.killed)}")
    if as_json:
        print(json.dumps(summary))
    else:
        err.line(status_text(summary))
        if interrupted:
            err.line("interrupted: stopped cleanly")
        log_path = Path(report.log) if report.log else nexus.log_path
        say(f"log: {log_path}" if log_path.exists() else "log: (nothing logged)")
        say(f"report: {report.report}")
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)
