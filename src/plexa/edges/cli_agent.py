"""``plexa agent``: serve runs on this machine for nexuses elsewhere (:mod:`plexa.nexus.agent`).

Registered on the main ``plexa`` app by :func:`register`. Prints ``ready`` once it listens,
serves until SIGTERM or Ctrl-C, then stops every actor it started.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from plexa.errors import PlexaError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``agent`` to the ``plexa`` app."""

    @app.command()
    def agent(
        host: Annotated[str, typer.Argument(help="This host's scope name (as host: lines say).")],
        listen: Annotated[
            list[str] | None, typer.Option(help="Zenoh endpoint to listen on (tls/ADDR:PORT).")
        ] = None,
        connect: Annotated[
            list[str] | None, typer.Option(help="Zenoh endpoint to connect to instead.")
        ] = None,
        key_file: Annotated[
            Path | None, typer.Option(help="A file holding the key a nexus must present.")
        ] = None,
        tls_ca: Annotated[Path | None, typer.Option(help="CA certificate (PEM).")] = None,
        tls_cert: Annotated[Path | None, typer.Option(help="This host's certificate.")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="This host's private key.")] = None,
        insecure: Annotated[
            bool, typer.Option(help="Allow plain tcp/, loopback too (tests, closed networks).")
        ] = False,
    ) -> None:
        """Start the actors that nexuses on other machines place on this host (docs/hosts.md)."""
        import logging

        from plexa.data.zenoh_session import TlsFiles, ZenohSettings
        from plexa.nexus.agent import Agent

        tls_files = (tls_ca, tls_cert, tls_key)
        if any(tls_files) and not all(tls_files):
            raise typer.BadParameter("--tls-ca, --tls-cert and --tls-key go together")
        tls = (
            TlsFiles(ca=str(tls_ca), cert=str(tls_cert), key=str(tls_key))
            if tls_ca and tls_cert and tls_key
            else None
        )
        if not listen and not connect:
            raise typer.BadParameter("give --listen or --connect")
        plain = [e for e in (*(listen or ()), *(connect or ())) if e.startswith("tcp/")]
        if plain and not insecure:
            print(f"error: {plain[0]}: plain tcp lets anyone who reaches the port (other users "
                  "of this machine too) start code as you; use tls/ (or --insecure on a "
                  "closed network)", file=sys.stderr)  # fmt: skip
            raise typer.Exit(2)
        key = key_file.read_text().strip() if key_file is not None else ""
        settings = ZenohSettings(
            listen=tuple(listen or ()), connect=tuple(connect or ()), tls=tls, insecure=insecure
        )
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        try:
            served = Agent(settings, host, key=key)
        except PlexaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

        def stop(*_: object) -> None:
            served.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        where = ", ".join(settings.listen or settings.connect)
        print(f"ready: agent {host} on {where}", flush=True)
        try:
            served.serve()
        finally:
            served.close()
