"""The ``plexa`` command line (typer): a thin edge over the Python API.

:func:`plexa.edges.cli.main` answers ``plexa ctl`` before this module is imported. A module
``cli_NAME.py`` adds its commands with one line at the end of this file.
"""

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
from rich.text import Text

from plexa.core import messages as msgs
from plexa.core.config import format_issues, load
from plexa.edges.cli_ctl import COMMANDS as CTL_COMMANDS
from plexa.edges.live import EventLines
from plexa.edges.tables import ProgressRates, render_status
from plexa.errors import ConfigError, EndpointInUse, NameInUse, PlexaError, UnsafePath

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run live pipelines of actors with zero-copy links.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from plexa import __version__

        print(f"plexa {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Run live pipelines of actors with zero-copy links."""


err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True, highlight=False)

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


def _status_text(status: dict[str, Any], rates: dict[str, float] | None = None) -> Text:
    return Text(render_status(status, rates))


def _need_textual() -> None:
    """Exit with a one-line hint when the terminal UI's extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("textual") is None:
        _say("error: the terminal UI needs textual: pip install 'plexa[tui]'")
        raise typer.Exit(2)


def _claim_name(name: str) -> Any:
    """Claim run name ``name`` for this process (exit 2 if a live run holds it)."""
    from plexa.nexus.names import claim_name

    try:
        return claim_name(name)
    except (NameInUse, UnsafePath) as exc:
        _say(f"error: {exc}")
        raise typer.Exit(2) from None


def _drop(claim: Any, early: Any) -> None:
    """Undo what a run that never started held: its name, its prestarted fork server."""
    claim.release()
    if early is not None:
        early.discard()


HOOKS_DRAIN_S = 5.0
"""How long a run's end waits for its web-hooks' last deliveries."""


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
    spec = _load(file)
    if transform is not None:
        try:
            spec = transform(spec)
        except PlexaError as exc:
            _say(f"error: {exc}")
            raise typer.Exit(2) from None
    run_name = name or spec.name
    spec = msgspec.structs.replace(spec, name=run_name)  # logs, reports, data: by run name

    def show_log(actor: str, rec: msgs.LogRecord) -> None:
        if rec.level >= (20 if console else 30):
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.t))
            level = _LEVELS.get(rec.level, str(rec.level))
            err.print(f"{stamp} {actor} {level} {rec.message}", markup=False, highlight=False)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    claim = _claim_name(run_name)  # held until the run has quit
    early = take()
    try:
        nexus = Nexus(
            spec, on_log=None if tui else show_log, resume=resume, name=run_name, prestarted=early
        )
        server = ControlServer(nexus, bind=bind)
    except EndpointInUse as exc:  # nothing started yet: no run to quit, no report to write
        _drop(claim, early)
        _say(f"error: {exc}")
        raise typer.Exit(2) from None
    except BaseException:
        _drop(claim, early)
        raise
    Jobs(nexus, spec.jobs).serve(server)  # launch, jobs; the file's jobs start with the run
    events = EventLines(spec, lambda line: err.print(Text(line)))
    if not tui:  # failures and restarts the moment they happen, the traceback once
        nexus.attach(Listener(events))
    live: Live | None = None
    attached: Any = None
    hooks: Any = None
    progress_rates = ProgressRates()

    def started() -> None:
        nonlocal live, attached, hooks
        if spec.webhooks:
            from plexa.edges.webhooks import WEBHOOKS_FILE, Dispatcher

            stats = nexus.paths.run_dir / WEBHOOKS_FILE
            hooks = Dispatcher.for_hooks(run_name, spec.webhooks, stats_file=stats)
        if attach is not None:
            attached = attach(run_name)
        if not as_json and not console:
            err.print(
                f"serving {run_name!r} (run {nexus.paths.run_id}): control "
                f"{server.control_endpoint}, events {server.events_endpoint}"
            )
        if console and not tui and err.is_terminal:
            live = Live(
                _status_text(nexus.status()), console=err, refresh_per_second=4, transient=True
            )
            live.start()

    def between() -> None:
        if live is not None:
            status = nexus.status()
            live.update(_status_text(status, progress_rates.update(status)))

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
                _say(line)
        server.close()
        claim.release()
    report, summary, interrupted = outcome.report, outcome.status, outcome.interrupted
    if outcome.error is not None and not nexus.failed:
        _say(f"error: {outcome.error}")
    for failure in report.failures:  # one line each; the traceback unless it was shown live
        shown = events.printed_traceback(failure.actor, failure.error)
        _say(str(failure).splitlines()[0] if shown else str(failure))
    if report.terminated or report.killed:
        err.print(f"stop ladder: SIGTERM {list(report.terminated)}, SIGKILL {list(report.killed)}")
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(_status_text(summary))
        if interrupted:
            err.print("interrupted: stopped cleanly")
        log_path = Path(report.log) if report.log else nexus.log_path
        _say(f"log: {log_path}" if log_path.exists() else "log: (nothing logged)")
        _say(f"report: {report.report}")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command(short_help="Run a pipeline in the foreground (live tables; Ctrl-C stops it).")
def run(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final status document as JSON.")
    ] = False,
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
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run every actor on this Ray cluster (HOST:PORT, auto; 'local' starts one).",
            metavar="ADDRESS",
        ),
    ] = None,
) -> None:
    """Run a pipeline in the foreground until Ctrl-C or --duration; exit 1 if an actor failed."""
    from plexa.edges.cli_record import with_record_option
    from plexa.launch.ray import on_ray

    if tui:
        _need_textual()
    recording = with_record_option(record, links)
    _serve(
        file,
        transform=lambda spec: on_ray(recording(spec) if recording else spec, ray),
        resume=resume,
        name=name,
        bind=None,
        duration=duration,
        hold=False,
        as_json=as_json,
        console=not as_json,
        tui=tui,
    )


@app.command(short_help="Run a pipeline headless, steered by plexa ctl / plexa client.")
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
    http: Annotated[
        int | None, typer.Option(help="Serve the HTTP API and dashboard on this port (0: any).")
    ] = None,
    http_bind: Annotated[str, typer.Option(help="Address for --http.")] = "127.0.0.1",
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate for --http.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key for --http.")] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run every actor on this Ray cluster (HOST:PORT, auto; 'local' starts one).",
            metavar="ADDRESS",
        ),
    ] = None,
) -> None:
    """Run a pipeline headless, steered with plexa ctl / plexa client until it is told to quit."""
    from plexa.edges.cli_web import AttachedWeb, check_bind
    from plexa.launch.ray import on_ray

    web: Callable[[str], Any] | None = None
    if http is not None:
        check_bind(http_bind, tls_cert, tls_key)
        web = lambda run: AttachedWeb.start(run, http, http_bind, tls_cert, tls_key)  # noqa: E731
    _serve(file, name=name, bind=bind, duration=duration, hold=hold, as_json=False,
           console=False, attach=web, transform=lambda spec: on_ray(spec, ray))  # fmt: skip


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    help="Send one command to a running pipeline: "
    + ", ".join(CTL_COMMANDS)
    + " (plexa ctl --help shows each one's syntax and an example).",
    short_help="Send one command to a running pipeline: " + ", ".join(CTL_COMMANDS) + ".",
)
def ctl(ctx: typer.Context) -> None:
    """Send one command to a running pipeline (``plexa ctl --help`` lists them)."""
    from plexa.edges.cli_ctl import main as ctl_main

    raise typer.Exit(ctl_main(list(ctx.args)))


@app.command(short_help="Attach the terminal UI to a running pipeline.")
def client(
    name: Annotated[
        str | None, typer.Argument(help="Run name or id (default: the only live run).")
    ] = None,
) -> None:
    """Attach the terminal UI to a running pipeline; detaching leaves it running."""
    _need_textual()
    from plexa.edges.tui import run_client

    try:
        run_client(name)
    except PlexaError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from None


@app.command(short_help="Check a pipeline file: ok, or every problem.")
def validate(file: Annotated[Path, typer.Argument(help="Pipeline YAML file.")]) -> None:
    """Check a pipeline file; print "ok" or every problem (exit 0 or 2)."""
    _load(file)
    print("ok")


@app.command(short_help="Remove what runs whose nexus died left behind.")
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


# ----- commands from other modules: one line each -------------------------------------------
from plexa.edges import cli_agent, cli_look, cli_new, cli_record, cli_runs, cli_web  # noqa: E402

app.command("list", short_help="List runs on this machine (--all: finished ones too).")(
    cli_runs.list_runs
)
app.command(short_help="Print a run's merged log (a running or finished run).")(cli_runs.logs)
app.command(short_help="Print how a run went: failures and tracebacks per actor.")(cli_runs.report)

cli_record.register(app)
cli_web.register(app)
cli_agent.register(app)
app.command(short_help="Draw the pipeline: tree, --mermaid or --dot (live rates for a run).")(
    cli_look.graph
)
app.command(short_help="Print messages of a link as they pass (a lossy tap).")(cli_look.peek)
app.command(short_help="Print a link's message rate and bandwidth.")(cli_look.hz)
app.add_typer(cli_new.new, name="new", short_help="Write a new actor or pipeline with a test.")
