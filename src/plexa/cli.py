"""The ``plexa`` command: a thin edge over the Python API."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from plexa import _messages as msgs
from plexa._config import format_issues, load
from plexa.errors import ConfigError, PlexaError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run live pipelines of actors with zero-copy links.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def _load(file: Path) -> Any:
    try:
        return load(file)
    except ConfigError as exc:
        err.print(format_issues(exc.issues), markup=False, highlight=False)
        raise typer.Exit(2) from None


def _status_table(status: dict[str, Any]) -> Table:
    run = status["run"]
    table = Table(title=f"{run['name']}  {run['state']}  {run['uptime_s']:.1f} s", expand=False)
    for col in ("actor", "state", "pid", "in/s", "out/s", "in", "out"):
        table.add_column(col, justify="right" if col not in ("actor", "state") else "left")
    for name, a in status["actors"].items():
        table.add_row(
            name,
            a["state"],
            str(a["pid"] or "-"),
            f"{a['rate_in']:.0f}",
            f"{a['rate_out']:.0f}",
            str(a["msgs_in"]),
            str(a["msgs_out"]),
        )
    return table


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a final JSON summary.")] = False,
) -> None:
    """Run a pipeline in the foreground until Ctrl-C or --duration; exit 1 if an actor failed."""
    from plexa._nexus import Nexus

    spec = _load(file)
    quiet = as_json

    def show_log(actor: str, rec: msgs.LogRecord) -> None:
        if rec.level >= (30 if quiet else 20):
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.t))
            err.print(
                f"{stamp} {actor} {_LEVELS.get(rec.level, rec.level)} {rec.message}",
                markup=False,
                highlight=False,
            )

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    nexus = Nexus(spec, on_log=show_log)
    summary: dict[str, Any] = {}
    interrupted = False
    try:
        nexus.start()
        nexus.setup()
        nexus.run()
        end = None if duration is None else time.monotonic() + duration
        live = (
            None
            if quiet or not err.is_terminal
            else Live(
                _status_table(nexus.status()), console=err, refresh_per_second=4, transient=True
            )
        )
        try:
            if live is not None:
                live.start()
            while not nexus.failed and (end is None or time.monotonic() < end):
                nexus.poll(0.25 if end is None else max(0.0, min(0.25, end - time.monotonic())))
                if live is not None:
                    live.update(_status_table(nexus.status()))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if live is not None:
                live.stop()
        nexus.stop()
    except KeyboardInterrupt:
        interrupted = True
    except PlexaError as exc:
        if not nexus.failed:
            err.print(f"error: {exc}", markup=False, highlight=False)
    finally:
        try:
            summary = nexus.status()
        finally:
            report = nexus.quit()
    summary["run"]["state"] = "failed" if report.failures else "stopped"
    for failure in report.failures:
        err.print(str(failure), markup=False, highlight=False)
    if report.terminated or report.killed:
        err.print(f"stop ladder: SIGTERM {list(report.terminated)}, SIGKILL {list(report.killed)}")
    if as_json:
        print(json.dumps(summary))
    elif not report.failures:
        err.print(_status_table(summary))
        if interrupted:
            err.print("interrupted: stopped cleanly")
    if report.failures or (not report.clean):
        raise typer.Exit(1)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")]) -> None:
    """Check a pipeline file; print "ok" or every problem (exit 0 or 2)."""
    _load(file)
    out.print("ok")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List runs on this machine and whether they are alive."""
    from plexa._cleanup import list_runs

    runs = list_runs()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": r.run_id,
                        "name": r.name,
                        "pid": r.pid,
                        "alive": r.alive,
                        "config": r.config,
                        "started": r.started,
                    }
                    for r in runs
                ]
            )
        )
        return
    if not runs:
        out.print("no runs")
        return
    for r in runs:
        out.print(
            f"{r.run_id}  {r.name:20s} pid {r.pid:<8d} {'alive' if r.alive else 'dead'}  {r.config}"
        )


@app.command()
def cleanup() -> None:
    """Remove processes, shared memory and socket files left by runs whose nexus died."""
    from plexa._cleanup import cleanup as do_cleanup

    report = do_cleanup()
    for proc in report.processes:
        print(f"killed process {proc}")
    for path in report.files:
        print(f"removed {path}")
    if not report:
        print("nothing to clean up")


def main() -> None:
    """Entry point of the ``plexa`` command."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
