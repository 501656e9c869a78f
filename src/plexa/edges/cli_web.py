"""``plexa web NAME``: serve a running pipeline's HTTP API (:mod:`plexa.edges.web`).

Registered on the main ``plexa`` app by :func:`register`. The token is made here, printed
once and written to ``web.token`` (mode 0600) in the run directory, which is removed again
when the server ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from plexa.core.ladder import Rung, stop_ladder
from plexa.errors import PlexaError

__all__ = ["AttachedWeb", "check_bind", "is_loopback", "register"]


def is_loopback(host: str) -> bool:
    """True if ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Refuse (exit 2, with the reason) a TLS option alone or a non-loopback bind without TLS."""
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if not is_loopback(bind) and tls_cert is None:
        print(f"error: refusing to serve on {bind} without TLS: give --tls-cert and "
              "--tls-key, or bind to loopback behind a TLS reverse proxy (docs/web.md)",
              file=sys.stderr)  # fmt: skip
        raise typer.Exit(2)


@dataclass
class AttachedWeb:
    """``plexa web NAME`` started by ``plexa server FILE --http PORT``: a child process of
    its own (a stalled HTTP client can only slow it, never the nexus), which dies with the
    server (``PR_SET_PDEATHSIG``) and is stopped with the stop ladder when the run ends."""

    proc: subprocess.Popen[bytes]

    @property
    def label(self) -> str:
        return "web"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    @classmethod
    def start(cls, name: str, port: int, bind: str, tls_cert: Path | None,
              tls_key: Path | None) -> AttachedWeb:  # fmt: skip
        """Start serving run ``name``; its url, token and dashboard lines go to stdout."""
        args = [sys.executable, "-m", "plexa", "web", name, "--port", str(port), "--bind", bind]
        if tls_cert is not None and tls_key is not None:
            args += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        return cls(subprocess.Popen(args, preexec_fn=_die_with_parent, env=os.environ.copy()))

    def close(self, grace: float = 3.0) -> Rung:
        """SIGTERM (the web server's way to be asked), wait, SIGKILL; how it ended."""
        outcome = stop_ladder([self], grace=grace, kill_grace=grace)
        return outcome.rungs.get(self.label, Rung.ASKED)


def _die_with_parent() -> None:
    from plexa.runtime.boot import die_with_parent

    die_with_parent()


def register(app: typer.Typer) -> None:
    """Add ``web`` to the ``plexa`` app."""

    @app.command()
    def web(
        name: Annotated[str, typer.Argument(help="Run name (or id) to serve.")],
        port: Annotated[int, typer.Option(help="TCP port; 0 lets the OS choose.")] = 8321,
        bind: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    ) -> None:
        """Serve a running pipeline's HTTP API (docs/web.md); prints the URL and the token."""
        import uvicorn

        from plexa.core.paths import RunPaths, write_private
        from plexa.edges.client import find_run
        from plexa.edges.web import create_app

        check_bind(bind, tls_cert, tls_key)
        try:
            run = find_run(name)
        except PlexaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        token = secrets.token_urlsafe(32)
        token_file = RunPaths.for_run(run.run_id).run_dir / "web.token"
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
        sock.bind((bind, port))
        sock.listen(128)
        host = f"[{bind}]" if ":" in bind else bind
        scheme = "https" if tls_cert else "http"
        config = uvicorn.Config(
            create_app([run.name], token),
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        try:
            write_private(token_file, token.encode())
            url = f"{scheme}://{host}:{sock.getsockname()[1]}"
            print(f"url: {url}", flush=True)
            print(f"token: {token}", flush=True)
            print(f"token file: {token_file}", flush=True)
            print(f"dashboard: {url}/#token={token}", flush=True)
            # uvicorn raises SIGTERM again once it has shut down: exit through ``finally``
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                token_file.unlink()
