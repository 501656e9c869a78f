"""Looking inside a pipeline: ``plexa graph``, ``plexa peek``, ``plexa hz``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from plexa.core.spec import PipelineSpec
from plexa.errors import PlexaError

__all__ = ["graph", "hz", "peek"]


def _fail(message: str, code: int = 1) -> typer.Exit:
    import sys

    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(code)


def _live_spec(name: str) -> tuple[Any, PipelineSpec]:
    """The paths and the spec of the running run ``name``."""
    import msgspec

    from plexa.core.paths import RunPaths, runtime_root
    from plexa.edges.client import find_run

    run = find_run(name)
    paths = RunPaths(run.run_id, runtime_root())
    try:
        spec = msgspec.json.decode(paths.spec_file.read_bytes(), type=PipelineSpec)
    except OSError as exc:
        raise PlexaError(f"run {name!r} has no spec yet ({exc})") from None
    return paths, spec


def graph(
    target: Annotated[str, typer.Argument(help="Pipeline YAML file, or a running run's name.")],
    as_mermaid: Annotated[bool, typer.Option("--mermaid", help="Print Mermaid.")] = False,
    as_dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT.")] = False,
) -> None:
    """Draw the pipeline: a tree (default), Mermaid or DOT; live rates for a running run."""
    from plexa.edges import graph as draw

    status: dict[str, Any] | None = None
    if Path(target).is_file():
        from plexa.edges.cli_serve import load_file as _load

        spec = _load(Path(target))
    else:
        from plexa.edges.client import connect

        try:
            _, spec = _live_spec(target)
            with connect(target) as client:
                status = client.status()
        except PlexaError as exc:
            raise _fail(f"{target!r} is neither a file nor a running run: {exc}") from None
    render = draw.mermaid if as_mermaid else draw.dot if as_dot else draw.tree
    print(render(spec, status))


def _tap(name: str, output: str) -> Any:
    from plexa.data.tap import Tap

    try:
        paths, spec = _live_spec(name)
        return Tap(paths, spec, output)
    except PlexaError as exc:
        raise _fail(str(exc)) from None


def _alive(name: str) -> bool:
    from plexa.edges.client import find_run

    try:
        find_run(name)
    except PlexaError:
        return False
    return True


def peek(
    name: Annotated[str, typer.Argument(help="Run name (or id).")],
    output: Annotated[str, typer.Argument(help="Output port: ACTOR.port.")],
    count: Annotated[int, typer.Option(help="Stop after this many messages (0: never).")] = 0,
    interval: Annotated[float, typer.Option(help="At most one message per this many s.")] = 0.2,
) -> None:
    """Print messages of a link as they pass (sampled; never slows or counts against it)."""
    shown = 0
    last_check = time.monotonic()
    with _tap(name, output) as tap:
        try:
            while count <= 0 or shown < count:
                sample = tap.take()
                if sample is None:
                    time.sleep(0.01)
                    if time.monotonic() - last_check > 1.0:
                        last_check = time.monotonic()
                        if not _alive(name):
                            raise _fail(f"run {name!r} ended")
                    continue
                print(f"#{sample.seq}  {sample.nbytes} B  {sample.text}", flush=True)
                shown += 1
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def hz(
    name: Annotated[str, typer.Argument(help="Run name (or id).")],
    output: Annotated[str, typer.Argument(help="Output port: ACTOR.port.")],
    window: Annotated[float, typer.Option(help="Seconds per line.")] = 1.0,
    count: Annotated[int, typer.Option(help="Stop after this many lines (0: never).")] = 0,
) -> None:
    """Print a link's message rate and bandwidth once per window (from sampled messages)."""
    lines = 0
    with _tap(name, output) as tap:
        try:
            while count <= 0 or lines < count:
                seen = []
                end = time.monotonic() + window
                while time.monotonic() < end:
                    sample = tap.take()
                    if sample is None:
                        time.sleep(0.002)
                    else:
                        seen.append(sample)
                if len(seen) < 2:
                    if not _alive(name):
                        raise _fail(f"run {name!r} ended")
                    print(f"{output}: no messages", flush=True)
                else:
                    span = seen[-1].t - seen[0].t
                    rate = (seen[-1].seq - seen[0].seq) / span if span > 0 else 0.0
                    size = sum(s.nbytes for s in seen) / len(seen)
                    print(
                        f"{output}: {rate:,.1f} msg/s  {rate * size / 1e6:,.2f} MB/s  "
                        f"mean {size:,.0f} B  ({len(seen)} sampled)",
                        flush=True,
                    )
                lines += 1
        except KeyboardInterrupt:
            return
