"""A run's directory and records: created private, written atomically, readable by clients.

``run.json`` (0600) is how ``plexa ctl``, ``list`` and ``cleanup`` find a run: its name, the
nexus's pid and start time (so a recycled pid is not taken for it), its endpoints and token.
``owner.json`` in the run's shared-memory folder says which runtime root created it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from typing import Any

import msgspec
import psutil
import zmq

from plexa.core.paths import SHM_ROOT, RunPaths, store_dir, write_private
from plexa.core.spec import PipelineSpec
from plexa.data.counters import Counters
from plexa.nexus.prestart import claim_run_dir

__all__ = ["RunResources", "create_run_dir", "run_fields", "write_record"]


def create_run_dir(paths: RunPaths, spec: PipelineSpec, *, claimed: bool = False) -> None:
    """Make the run's private directory and shared-memory folder and write the owner record
    (unless ``claimed`` already, :mod:`plexa.nexus.prestart`); write the spec."""
    if not claimed:
        claim_run_dir(paths)
    write_private(paths.spec_file, msgspec.json.encode(spec))


def run_fields(
    paths: RunPaths, spec: PipelineSpec, started: float, pids: dict[str, int], log: str
) -> dict[str, Any]:
    """The nexus's own fields of the run record (its attachments add theirs): the config,
    when it started, the actors' pids, their endpoint, the log, the hosts' endpoints."""
    return {
        "config": spec.source,
        "started": started,
        "actors": pids,
        "endpoints": {"actors": paths.endpoint("actors")},
        "log": log,
        "hosts": {scope: host.endpoint for scope, host in spec.hosts.items()},
    }


def write_record(
    paths: RunPaths, name: str, fields: dict[str, Any], extra: Iterable[dict[str, Any]] = ()
) -> None:
    """Write the run record: who runs it (pid, start time), its name, plus ``fields`` and
    each of ``extra`` (attachments' fields; their ``endpoints`` join the run's)."""
    fields = {**fields, "endpoints": dict(fields.get("endpoints", {}))}
    for more in extra:
        fields.update({k: v for k, v in more.items() if k != "endpoints"})
        fields["endpoints"].update(more.get("endpoints", {}))
    me = psutil.Process()
    record = {
        "run_id": paths.run_id,
        "name": name,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "create_time": me.create_time(),
        **fields,
    }
    write_private(paths.record, json.dumps(record).encode())


class RunResources:
    """What a run holds while it lives: its directory, shared counters, object store,
    iceoryx2 domain and the socket actors report on. Created together, removed together."""

    def __init__(self, paths: RunPaths, spec: PipelineSpec, *, claimed: bool = False) -> None:
        from plexa.data.domain import Domain
        from plexa.data.store import Store

        self.paths = paths
        create_run_dir(paths, spec, claimed=claimed)
        self.counters = Counters(spec, paths.counters_file, create=True)
        where = store_dir(spec.settings, spec.name, paths)
        self.store = Store(where, spec.settings.store_size, create=True)
        self.domain = Domain(paths, "nexus")
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        for opt in (zmq.ROUTER_HANDOVER, zmq.ROUTER_MANDATORY):
            self.router.setsockopt(opt, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(paths.endpoint("actors"))

    def grow(self, spec: PipelineSpec, actor: str) -> None:
        """Make room for ``actor``, added to the live run as the last of ``spec``'s actors:
        its own spec file (the run's plus itself; the others keep theirs) and its counters
        row, at the end of the file, so every other row stays where it is."""
        write_private(self.paths.actor_spec_file(actor), msgspec.json.encode(spec))
        old, self.counters = self.counters, Counters(spec, self.paths.counters_file, grow=True)
        old.close()

    def forget_dead_nodes(self) -> None:
        """Let iceoryx2 reclaim what dead processes held."""
        with contextlib.suppress(Exception):
            self.domain.cleanup_dead_nodes()

    def close(self) -> list[str]:
        """Release everything and remove the run's files; returns what needed force."""
        from plexa.nexus.cleanup import remove_run_files

        with contextlib.suppress(Exception):
            self.store.close()
        self.counters.close()
        self.router.close(linger=0)
        self.ctx.term()
        # The domain's files go first, then the node: dropping a node scans every node file
        # of the domain, and the actors left theirs to this removal (ActorProcess.run_ending),
        # so the domain's own files are no sign of force.
        removed = remove_run_files(self.paths)
        with contextlib.suppress(Exception):
            self.domain.close()
        domain = str(SHM_ROOT / self.paths.iox_prefix)
        return [path for path in removed if not path.startswith(domain)]
