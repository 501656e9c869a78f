"""An example worker job: serves its configuration and id over HTTP on the port it was given.

Run by a pipeline's ``jobs:`` section or ``plexa ctl NAME launch plexa.examples.job_http``;
``GET /`` on its port answers ``{"guid", "port", "config"}`` (``docs/jobs.md``).
"""

from __future__ import annotations

import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from plexa.jobs import parse_args, read_config


def main(argv: list[str] | None = None) -> None:
    """Read the arguments and the configuration, then serve until SIGTERM."""
    args = parse_args(argv)
    config = read_config(timeout=3)
    body = json.dumps({"guid": args.guid, "port": args.port, "config": config}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: Any) -> None:
            print(f"{self.address_string()} {format % a}", flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"job {args.guid} serving on port {args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
