"""The ``plexa`` command line (typer): a thin edge over the Python API.

:func:`plexa.edges.cli.main` answers ``plexa ctl`` before this module is imported. A module
``cli_NAME.py`` adds its commands with one line at the end of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from plexa.edges.cli_ctl import COMMANDS as CTL_COMMANDS
from plexa.edges.cli_serve import load_file as _load
from plexa.edges.cli_serve import say as _say
from plexa.edges.cli_serve import serve as _serve
from plexa.errors import PlexaError

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


def _need_textual() -> None:
    """Exit with a one-line hint when the terminal UI's extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("textual") is None:
        _say("error: the terminal UI needs textual: pip install 'plexa[tui]'")
        raise typer.Exit(2)


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
