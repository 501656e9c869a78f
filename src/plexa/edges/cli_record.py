"""``plexa replay``, ``plexa info`` and ``plexa export``, and ``plexa run --record``.

Registered on the main ``plexa`` app by :func:`register`; each command is a thin call of
:mod:`plexa.recording` / :mod:`plexa.replay`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from plexa.core.spec import PipelineSpec, RecordSpec
from plexa.errors import PlexaError, RecordingError

if TYPE_CHECKING:  # numpy and the reader load when a command needs them: the CLI starts fast
    import numpy as np

    from plexa.data.recording import Recording

__all__ = ["export_channel", "register", "with_record_option"]

out = Console()


def with_record_option(
    path: str | None, links: list[str] | None
) -> Callable[[PipelineSpec], PipelineSpec] | None:
    """The spec transform of ``plexa run --record PATH [--links X ...]`` (None without it)."""
    if path is None:
        if links:
            raise typer.BadParameter("--links needs --record PATH")
        return None

    def transform(spec: PipelineSpec) -> PipelineSpec:
        base = spec.record or RecordSpec()
        outputs = [f"{n}.{p}" for n, a in spec.actors.items() for p in a.outputs]
        wrong = [x for x in links or () if x not in outputs]
        if wrong:
            raise RecordingError(
                f"no output {', '.join(wrong)} in {spec.name} (outputs: {', '.join(outputs)})"
            )
        record = RecordSpec(
            path=path,
            links=tuple(links) if links else base.links,
            chunk_size=base.chunk_size,
            compression=base.compression,
            policy=base.policy,
            capacity=base.capacity,
            foxglove=base.foxglove,
            start=base.start,
        )
        return spec.__class__(
            name=spec.name,
            actors=spec.actors,
            links=spec.links,
            settings=spec.settings,
            source=spec.source,
            record=record,
        )

    return transform


def _players_done(nexus: Any) -> bool:
    """True once every player has played its recording out (and is not looping)."""
    from plexa.replay import _TARGET

    players = [n for n, a in nexus.spec.actors.items() if a.target == _TARGET]
    if not players or any(nexus.spec.actors[n].options.get("loop") for n in players):
        return False
    status = nexus.status()["actors"]
    for name in players:
        progress = status[name].get("progress") or {}
        if progress.get("message") != "played":
            return False
    return True


def _fail(exc: Exception) -> None:
    sys.stderr.write(f"error: {exc}\n")
    raise typer.Exit(2)


def info(file: Path) -> None:
    """Channels, messages, duration, rates, sizes and encodings of a recording."""
    from plexa.data.recording import Recording

    try:
        rec = Recording(file)
    except (OSError, PlexaError) as exc:
        _fail(exc)
    with rec:
        channels = rec.info()
        meta = rec.metadata.get("plexa", {})
        state = (
            "complete" if rec.complete else "not finished (the writer died): read to its last chunk"
        )
    size = file.stat().st_size
    first = min((c.first_ns for c in channels), default=0)
    last = max((c.last_ns for c in channels), default=0)
    out.print(f"{file}: {size / 1e6:.1f} MB, {state}")
    if meta:
        out.print(
            f"recorded from pipeline {meta.get('pipeline', '?')!r}, run {meta.get('run', '?')}"
        )
    out.print(
        f"duration {(last - first) / 1e9:.3f} s, {sum(c.messages for c in channels)} messages"
    )
    table = Table()
    for col in ("channel", "messages", "rate/s", "MB", "MB/s", "encoding"):
        table.add_column(col, justify="left" if col in ("channel", "encoding") else "right")
    for c in channels:
        mbs = c.bytes / 1e6 / c.duration_s if c.duration_s > 0 else 0.0
        table.add_row(
            c.topic,
            str(c.messages),
            f"{c.rate_hz:.1f}",
            f"{c.bytes / 1e6:.1f}",
            f"{mbs:.1f}",
            ", ".join(c.encodings),
        )
    out.print(table)


def _arrays(rec: Recording, channel: str) -> Iterable[np.ndarray[Any, Any]]:
    import numpy as np

    for msg in rec.messages([channel]):
        if not isinstance(msg.obj, np.ndarray):
            raise RecordingError(f"channel {channel} holds {type(msg.obj).__name__}, not arrays")
        yield msg.obj


def export_channel(file: Path, channel: str, to: Path) -> tuple[int, tuple[int, ...], str]:
    """Write the arrays of ``channel`` as one stack (``.npy``, ``.zarr`` or ``.h5``):
    returns the count, the stack's shape and its dtype. Every array must have the same
    shape and dtype; the stack is written as it is read, never held whole in memory."""
    from plexa.data.recording import Recording

    with Recording(file) as rec:
        count = 0
        shape: tuple[int, ...] = ()
        dtype: np.dtype[Any] | None = None
        for arr in _arrays(rec, channel):
            if dtype is None:
                shape, dtype = arr.shape, arr.dtype
            elif arr.shape != shape or arr.dtype != dtype:
                raise RecordingError(
                    f"channel {channel}: message {count} is {arr.dtype}{list(arr.shape)}, "
                    f"the first was {dtype}{list(shape)}: not one stack"
                )
            count += 1
        if dtype is None:
            raise RecordingError(f"channel {channel} has no messages in {file}")
        full = (count, *shape)
        sink = _sink(to, full, dtype, channel)
        for i, arr in enumerate(_arrays(rec, channel)):
            sink[i] = arr
        if hasattr(sink, "flush"):
            sink.flush()
        closer = getattr(sink, "_plexa_close", None)
        if closer is not None:
            closer()
        del sink
    return count, full, str(dtype)


def _sink(to: Path, shape: tuple[int, ...], dtype: np.dtype[Any], channel: str) -> Any:
    import numpy as np

    suffix = to.suffix.lower()
    if suffix == ".npy":
        return np.lib.format.open_memmap(to, mode="w+", dtype=dtype, shape=shape)
    chunks = (1, *shape[1:])
    if suffix == ".zarr":
        try:
            import zarr
        except ImportError:
            raise RecordingError(
                "export to .zarr needs the zarr package (pip install zarr)"
            ) from None
        return zarr.open_array(str(to), mode="w", shape=shape, chunks=chunks, dtype=dtype)
    if suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError:
            raise RecordingError(
                "export to .h5 needs the h5py package (pip install h5py)"
            ) from None
        fh = h5py.File(to, "w")
        data = fh.create_dataset(channel, shape=shape, dtype=dtype, chunks=chunks)
        data._plexa_close = fh.close
        return data
    raise RecordingError(f"export writes .npy, .zarr or .h5 files, not {to.name!r}")


def register(app: typer.Typer) -> None:
    """Add ``replay``, ``info`` and ``export`` to the ``plexa`` app."""

    @app.command()
    def replay(
        file: Annotated[Path, typer.Argument(help="The MCAP recording.")],
        pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
        speed: Annotated[str, typer.Option(help="1 (recorded timing), 2, 0.5, ... or max.")] = "1",
        loop: Annotated[bool, typer.Option("--loop", help="Start over at the end.")] = False,
        start: Annotated[
            float | None, typer.Option("--from", help="Start this many seconds in.")
        ] = None,
        end: Annotated[float | None, typer.Option("--to", help="End this many seconds in.")] = None,
        allow_pickle: Annotated[
            bool, typer.Option("--allow-pickle", help="Play pickled channels (trusted files).")
        ] = False,
        record: Annotated[str | None, typer.Option(help="Record this run to an MCAP file.")] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print a final JSON summary.")
        ] = False,
        duration: Annotated[
            float | None, typer.Option(help="Stop after this many seconds.")
        ] = None,
    ) -> None:
        """Run a pipeline with its recorded sources played back from FILE; ends when played."""
        from plexa.edges.cli_serve import serve as _serve
        from plexa.replay import replay_spec

        if speed != "max":
            try:
                speed_value: float | str = float(speed)
            except ValueError:
                raise typer.BadParameter("--speed must be a number or max") from None
        else:
            speed_value = "max"
        recording = with_record_option(record, None)

        def transform(spec: PipelineSpec) -> PipelineSpec:
            spec = replay_spec(
                spec,
                str(file.absolute()),
                speed=speed_value,
                loop=loop,
                start=start,
                end=end,
                allow_pickle=allow_pickle,
            )
            return recording(spec) if recording is not None else spec

        _serve(
            pipeline,
            name=None,
            bind=None,
            duration=duration,
            hold=False,
            as_json=as_json,
            console=not as_json,
            transform=transform,
            until=_players_done,
        )

    @app.command("info")
    def info_(file: Annotated[Path, typer.Argument(help="The MCAP recording.")]) -> None:
        """Show what a recording holds: channels, messages, duration, rates, sizes."""
        info(file)

    @app.command()
    def export(
        file: Annotated[Path, typer.Argument(help="The MCAP recording.")],
        channel: Annotated[str, typer.Option(help="The channel (actor.port) to export.")],
        to: Annotated[Path, typer.Option(help="Output: .npy, .zarr or .h5.")],
    ) -> None:
        """Export a channel of equal arrays (an image stack) to .npy, .zarr or .h5."""
        try:
            count, shape, dtype = export_channel(file, channel, to)
        except (OSError, PlexaError) as exc:
            _fail(exc)
        out.print(f"{to}: {count} arrays, {dtype}{list(shape)}")
