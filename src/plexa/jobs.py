"""For authors of worker jobs (``docs/jobs.md``): the arguments a job is started with and
its configuration, read from standard input within a deadline.

```python
from plexa.jobs import parse_args, read_config

args = parse_args()                 # --guid GUID --port PORT (and whatever else follows)
config = read_config(timeout=3)     # the job's config section, as JSON data
serve_on(args.port, config)
```
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from plexa.errors import PlexaError, Timeout

__all__ = ["JobArgs", "parse_args", "read_config"]


@dataclass(frozen=True)
class JobArgs:
    """A job's command line."""

    guid: str
    """Its id, given by the run (the same across restarts)."""
    port: int
    """The TCP port it was given: free when it started, and held by no other job."""
    rest: list[str] = field(default_factory=list)
    """The arguments after these (a job spec's ``args``)."""


def parse_args(argv: Sequence[str] | None = None) -> JobArgs:
    """``--guid GUID --port PORT`` from ``argv`` (default ``sys.argv[1:]``); a usage error
    exits with status 2 and the reason, as argparse does."""
    parser = argparse.ArgumentParser(description="a plexa worker job")
    parser.add_argument("--guid", required=True, help="the job's id")
    parser.add_argument("--port", required=True, type=int, help="the TCP port to serve on")
    known, rest = parser.parse_known_args(argv)
    if not 0 < known.port < 65536:
        parser.error(f"--port must be a TCP port, not {known.port}")
    return JobArgs(known.guid, known.port, list(rest))


def read_config(timeout: float = 3.0, fd: int | None = None) -> Any:
    """The configuration the run writes to standard input (one JSON line).

    Raises :class:`plexa.errors.Timeout` if no whole line came within ``timeout`` seconds,
    and :class:`plexa.errors.PlexaError` if the input ended first or is not JSON. The run
    fails a job that has not read its configuration by its own deadline (3 s by default).
    """
    fd = sys.stdin.fileno() if fd is None else fd
    deadline = time.monotonic() + timeout
    data = bytearray()
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Timeout(f"no configuration on standard input within {timeout:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise PlexaError("standard input ended before a configuration line came")
        data += chunk
    line = bytes(data).split(b"\n", 1)[0]
    try:
        return json.loads(line)
    except ValueError as exc:
        raise PlexaError(f"the configuration is not JSON: {exc}") from None
