"""The ``plexa`` command's entry point: fast paths first, then the full command line.

``plexa ctl ...`` and ``plexa --version`` are answered without importing typer or the rest of
plexa (see :mod:`plexa.edges.cli_ctl`); every other command is parsed by the typer app in
:mod:`plexa.edges.cli_app`, where further ``cli_*`` modules register their commands.
``plexa run`` and ``plexa server`` start their run's fork server before that
(:mod:`plexa.nexus.prestart`), so that its imports overlap this process's.
"""

from __future__ import annotations

import contextlib
import sys
from typing import NoReturn

__all__ = ["main"]


def _leave(code: object) -> NoReturn:
    """End a ``plexa run`` whose run is over without the interpreter's own teardown (~80 ms
    of finalizing numpy, zmq and iceoryx2 after Ctrl-C): the run has released everything,
    and only what is buffered is left to flush."""
    import logging
    import os

    from plexa.nexus.prestart import discard_untaken

    discard_untaken()  # a run that never started: its fork server and directories
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``plexa`` command."""
    words = sys.argv[1:] if argv is None else argv
    try:
        if words[:1] == ["ctl"]:
            from plexa.edges.cli_ctl import main as ctl

            sys.exit(ctl(words[1:]))
        if words[:1] in (["run"], ["server"]) and not {"--help", "--ray"} & set(words):
            from plexa.nexus.prestart import prestart

            prestart()  # the fork server imports while this process does
            from plexa.edges.cli_serve import run_plain

            try:
                ran = run_plain(words)
            except SystemExit as exc:
                _leave(exc.code)
            if ran:
                _leave(0)
        if words[:1] in (["--version"], ["-V"]):
            from plexa import __version__

            print(f"plexa {__version__}")
            return
        from plexa.edges.cli_app import app

        app(words, prog_name="plexa")
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a runtime directory another user could control
        from plexa.errors import UnsafePath

        if not isinstance(exc, UnsafePath):
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
