"""The ``plexa`` command: a thin edge over the Python API."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from plexa.core import messages as msgs
from plexa.core.config import format_issues, load
from plexa.errors import ConfigError, NameInUse, PlexaError, UnsafePath

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run live pipelines of actors with zero-copy links.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def _say(text: str) -> None:
    """A plain line on stderr (no wrapping: file:line messages stay one per line)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _load(file: Path) -> Any:
    try:
        return load(file)
    except ConfigError as exc:
        _say(format_issues(exc.issues))
        raise typer.Exit(2) from None


def _status_table(status: dict[str, Any]) -> Table:
    run = status["run"]
    table = Table(title=f"{run['name']}  {run['state']}  {run['uptime_s']:.1f} s", expand=False)
    for col in ("actor", "state", "pid", "in/s", "out/s", "in", "out", "progress"):
        table.add_column(
            col, justify="right" if col not in ("actor", "state", "progress") else "left"
        )
    for name, a in status["actors"].items():
        table.add_row(
            name,
            a["state"],
            str(a["pid"] or "-"),
            f"{a['rate_in']:.0f}",
            f"{a['rate_out']:.0f}",
            str(a["msgs_in"]),
            str(a["msgs_out"]),
            _progress_bar(a.get("progress")),
        )
    return table


def _progress_bar(progress: dict[str, Any] | None, width: int = 20) -> str:
    """``[#######.............]  35%  message`` (or ``done`` alone without a total)."""
    if not progress:
        return ""
    done, total, note = progress["done"], progress.get("total"), progress.get("message", "")
    if not total:
        return f"{done:g} {note}".strip()
    frac = max(0.0, min(1.0, done / total))
    filled = int(frac * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {frac:4.0%} {note}".rstrip()


def _claim_name(name: str) -> Any:
    """Claim run name ``name`` for this process (exit 2 if a live run holds it)."""
    from plexa.nexus.names import claim_name

    try:
        return claim_name(name)
    except (NameInUse, UnsafePath) as exc:
        _say(f"error: {exc}")
        raise typer.Exit(2) from None


def _serve(
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
) -> None:
    """Shared by ``run`` and ``server``: start, serve clients, stop, quit, report.

    ``transform`` turns the loaded spec into the one to run (``--record``, ``replay``);
    the run also ends once ``until(nexus)`` is true.
    """
    from plexa.nexus.driver import drive
    from plexa.nexus.nexus import Nexus
    from plexa.nexus.server import ControlServer

    spec = _load(file)
    if transform is not None:
        try:
            spec = transform(spec)
        except PlexaError as exc:
            _say(f"error: {exc}")
            raise typer.Exit(2) from None
    run_name = name or spec.name

    def show_log(actor: str, rec: msgs.LogRecord) -> None:
        if rec.level >= (20 if console else 30):
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.t))
            level = _LEVELS.get(rec.level, str(rec.level))
            err.print(f"{stamp} {actor} {level} {rec.message}", markup=False, highlight=False)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    claim = _claim_name(run_name)  # held until the run has quit
    try:
        nexus = Nexus(spec, on_log=None if tui else show_log, resume=resume, name=run_name)
        server = ControlServer(nexus, bind=bind)
    except BaseException:
        claim.release()
        raise
    live: Live | None = None

    def started() -> None:
        nonlocal live
        if not as_json and not console:
            err.print(
                f"serving {run_name!r} (run {nexus.paths.run_id}): control "
                f"{server.control_endpoint}, events {server.events_endpoint}"
            )
        if console and not tui and err.is_terminal:
            live = Live(
                _status_table(nexus.status()), console=err, refresh_per_second=4, transient=True
            )
            live.start()

    def between() -> None:
        if live is not None:
            live.update(_status_table(nexus.status()))

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
        server.close()
        claim.release()
    report, summary, interrupted = outcome.report, outcome.status, outcome.interrupted
    if outcome.error is not None and not nexus.failed:
        _say(f"error: {outcome.error}")
    for failure in report.failures:
        _say(str(failure))
    if report.terminated or report.killed:
        err.print(f"stop ladder: SIGTERM {list(report.terminated)}, SIGKILL {list(report.killed)}")
    if as_json:
        print(json.dumps(summary))
    elif not report.failures:
        err.print(_status_table(summary))
        if interrupted:
            err.print("interrupted: stopped cleanly")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a final JSON summary.")] = False,
    name: Annotated[
        str | None, typer.Option(help="Run name for plexa ctl (default: the file's name).")
    ] = None,
    tui: Annotated[bool, typer.Option("--tui", help="Show the terminal UI.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Give actors with checkpoints their last state.")
    ] = False,
    record: Annotated[
        str | None, typer.Option(help="Record to this MCAP file ({name}, {run}, {time}).")
    ] = None,
    links: Annotated[
        list[str] | None, typer.Option(help="Outputs to record (actor.port; default all).")
    ] = None,
) -> None:
    """Run a pipeline in the foreground until Ctrl-C or --duration; exit 1 if an actor failed."""
    from plexa.edges.cli_record import with_record_option

    _serve(
        file,
        transform=with_record_option(record, links),
        resume=resume,
        name=name,
        bind=None,
        duration=duration,
        hold=False,
        as_json=as_json,
        console=not as_json,
        tui=tui,
    )


@app.command()
def server(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    name: Annotated[
        str | None, typer.Option(help="Run name (default: the pipeline's name).")
    ] = None,
    bind: Annotated[
        str | None,
        typer.Option(
            help="Serve clients over tcp on this address, encrypted and authenticated with "
            "CURVE keys kept in the run record (default: ipc sockets in the run directory, "
            "for this user on this host only; see docs/security.md)."
        ),
    ] = None,
    hold: Annotated[
        bool, typer.Option(help="Start the actors but wait for setup/run commands.")
    ] = False,
    duration: Annotated[float | None, typer.Option(help="Quit after this many seconds.")] = None,
) -> None:
    """Run a pipeline headless, steered with plexa ctl / plexa client until it is told to quit."""
    _serve(file, name=name, bind=bind, duration=duration, hold=hold, as_json=False, console=False)


@app.command()
def ctl(
    name: Annotated[
        str, typer.Argument(help="Run name (or id), or the path of a copy of its run record.")
    ],
    command: Annotated[
        str, typer.Argument(help="setup, run, pause, resume, stop, quit, status, ...")
    ],
    actor: Annotated[str | None, typer.Argument(help="Apply to this actor only.")] = None,
    args: Annotated[list[str] | None, typer.Argument(help="Further arguments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reply as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
    host: Annotated[
        str | None, typer.Option(help="The run's host, for a run record copied from there.")
    ] = None,
) -> None:
    """Send one command to a running pipeline; exit 1 if it is refused."""
    from plexa.edges.client import connect

    try:
        client = connect(name, host=host, timeout=timeout)
    except PlexaError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    if command == "record":  # plexa ctl NAME record start|stop [LINKS]: the recorder's command
        record_args = [actor or "", None, list(args or [])]
        command, actor, args = "invoke", "recorder", ["record", json.dumps(record_args)]
    with client:
        extra = _ctl_args(command, list(args or []))
        try:
            resp = client.request_raw(command, actor, **extra)
        except PlexaError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(msgspec.to_builtins(resp)))
    elif resp.ok:
        if command == "status" and isinstance(resp.value, dict):
            out.print(_status_table(resp.value))
        else:
            print(
                resp.value
                if not isinstance(resp.value, (dict, list))
                else json.dumps(resp.value, indent=2)
            )
    else:
        _say(f"refused: {resp.error}")
        if resp.traceback:
            _say(resp.traceback.rstrip())
    if not resp.ok:
        raise typer.Exit(1)


def _ctl_args(command: str, args: list[str]) -> dict[str, Any]:
    """Positional arguments after the actor, by command: ``set KEY VALUE``, ``invoke METHOD [JSON]``."""
    if command == "set" and len(args) == 2:
        try:
            value: Any = json.loads(args[1])
        except ValueError:
            value = args[1]
        return {"key": args[0], "value": value}
    if command == "invoke" and args:
        return {"method": args[0], "args": json.loads(args[1]) if len(args) > 1 else []}
    if args:
        return {"argv": args}
    return {}


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Run name (or id).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records.")
    ] = False,
    lines: Annotated[int, typer.Option(help="How many recent records to print first.")] = 100,
) -> None:
    """Print a running pipeline's merged log (and follow it)."""
    from plexa.edges.client import connect
    from plexa.nexus.logs import format_log

    try:
        client = connect(name)
    except PlexaError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    with client:
        if follow:
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
        for entry in client.request("logs", lines=lines):
            print(format_log(entry))


@app.command()
def client(
    name: Annotated[
        str | None, typer.Argument(help="Run name or id (default: the only live run).")
    ] = None,
) -> None:
    """Attach the terminal UI to a running pipeline; detaching leaves it running."""
    try:
        from plexa.edges.tui import run_client
    except ImportError:
        _say("error: the terminal UI needs textual: pip install 'plexa[tui]'")
        raise typer.Exit(2) from None
    try:
        run_client(name)
    except PlexaError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from None


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")]) -> None:
    """Check a pipeline file; print "ok" or every problem (exit 0 or 2)."""
    _load(file)
    out.print("ok")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List runs on this machine and whether they are alive."""
    from plexa.nexus.cleanup import list_runs

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
    from plexa.nexus.cleanup import cleanup as do_cleanup

    report = do_cleanup()
    for proc in report.processes:
        print(f"killed process {proc}")
    for path in report.files:
        print(f"removed {path}")
    if not report:
        print("nothing to clean up")


from plexa.edges import cli_record  # noqa: E402  (its commands need ``app`` and ``_serve``)

cli_record.register(app)


def main() -> None:
    """Entry point of the ``plexa`` command."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except UnsafePath as exc:  # a runtime directory another user could control
        _say(f"error: {exc}")
        sys.exit(2)
