"""``plexa new actor NAME`` / ``plexa new pipeline NAME`` (see :mod:`plexa.edges.scaffold`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from plexa.edges.scaffold import new_actor, new_pipeline

__all__ = ["new"]

new = typer.Typer(help="Write a working skeleton with a test: an actor or a pipeline.")

Folder = Annotated[Path, typer.Option("--dir", help="Where to write (default: here).")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing files.")]


def _write(
    write: Callable[[str, Path, bool], list[Path]], name: str, folder: Path, force: bool
) -> None:
    try:
        paths = write(name, folder, force)
    except (ValueError, FileExistsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from None
    for path in paths:
        print(f"wrote {path}")
    print(f"test it: pytest {paths[-1]}")


@new.command("actor")
def actor(
    name: Annotated[str, typer.Argument(help="Actor name (a module and a class are made).")],
    folder: Folder = Path("."),
    force: Force = False,
) -> None:
    """Write MODULE.py with an actor class and test_MODULE.py with its test."""
    _write(new_actor, name, folder, force)


@new.command("pipeline")
def pipeline(
    name: Annotated[str, typer.Argument(help="Pipeline name (a folder is made).")],
    folder: Folder = Path("."),
    force: Force = False,
) -> None:
    """Write NAME/pipeline.yaml, NAME/actors.py and NAME/test_pipeline.py."""
    _write(new_pipeline, name, folder, force)
