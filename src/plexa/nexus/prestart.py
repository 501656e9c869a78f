"""A run's fork server, started first thing, while the nexus still imports its own modules.

``plexa run`` spends ~0.5 s of CPU importing (the command line, zmq, numpy, iceoryx2) before
it has a spec to start, and the fork server (:mod:`plexa.launch.zygote`) spends about as long
importing what actors need. Started at the top of the command, the two overlap on a
multi-core machine instead of running one after the other.

The fork server carries its run's mark (``PLEXA_RUN_DIR``), so the run's id is chosen here
and its shared-memory owner record written before the fork server exists: a concurrent
``plexa cleanup`` never takes it for a process of a dead run. What is not handed to a
:class:`plexa.nexus.nexus.Nexus` (a config error, ``--help``) is removed again at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass

from plexa.core.paths import RUN_DIR_ENV, RunPaths, new_run_id, write_private
from plexa.launch.local import FORK_SERVER_ENV
from plexa.launch.zygote import ForkServer

__all__ = ["Prestart", "claim_run_dir", "discard_untaken", "prestart", "take"]

@dataclass
class Prestart:
    """A run id whose directories exist, and the fork server already starting for it."""

    paths: RunPaths
    server: ForkServer | None

    def take_server(self) -> ForkServer | None:
        """The fork server, handed over once (to the run's launcher)."""
        server, self.server = self.server, None
        return server

    def discard_server(self) -> None:
        """End the fork server (the run has no use for it)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def discard(self) -> None:
        """End the fork server and remove the run's directories (nothing ran in them)."""
        from plexa.nexus.cleanup import remove_run_files

        self.discard_server()
        remove_run_files(self.paths)


_pending: list[Prestart] = []


def claim_run_dir(paths: RunPaths) -> None:
    """Make run ``paths``'s private directory and shared-memory folder and write its owner
    record (this process), which marks the run as alive for ``plexa cleanup``."""
    import psutil

    paths.run_dir.mkdir(parents=True, mode=0o700)
    paths.shm_dir.mkdir(mode=0o700)
    owner = {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "create_time": psutil.Process().create_time(),
        "root": str(paths.root),
    }
    write_private(paths.shm_dir / "owner.json", json.dumps(owner).encode())


def prestart() -> None:
    """Choose this process's next run id, claim its directories and start its fork server.

    Best effort: with ``PLEXA_FORK_SERVER=0``, or if anything fails, nothing is prestarted
    and the nexus starts its run as it would have.
    """
    if _pending or os.environ.get(FORK_SERVER_ENV, "1") == "0":
        return
    try:
        paths = RunPaths.for_run(new_run_id())
        claim_run_dir(paths)
    except Exception:  # an unsafe runtime root and the like: the nexus reports it itself
        return
    early = Prestart(paths, None)
    _pending.append(early)
    with contextlib.suppress(OSError):
        env = dict(os.environ)
        env[RUN_DIR_ENV] = str(paths.run_dir)
        early.server = ForkServer(env, paths.run_dir / "fork-server.err")


def take() -> Prestart | None:
    """The prestarted run, handed over once (its new owner discards it when done)."""
    return _pending.pop() if _pending else None


@atexit.register
def discard_untaken() -> None:
    """Discard what was prestarted and never taken (at exit, or before a fast exit)."""
    while _pending:
        with contextlib.suppress(Exception):
            _pending.pop().discard()
