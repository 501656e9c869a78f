"""Where a pipeline's checkpoints are kept, and how they travel between machines.

An actor process writes its checkpoints into an LMDB store on its own machine
(``$PLEXA_DATA_DIR/NAME/checkpoints``, :mod:`plexa.runtime.services`). An actor on another
machine (a host's agent, a Ray node other than the nexus's) would lose them with that
machine, and could not get them back on another one: so the agent that serves it sends each
new checkpoint to the nexus (as stored bytes, never unpickled on the way), the nexus keeps
it in its own store, and gives it to the agent that starts the actor next, wherever that is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plexa.core.paths import data_dir

__all__ = ["STORE_SIZE", "Checkpoints", "checkpoint_path"]

STORE_SIZE = 1 << 30
"""The checkpoint store's size limit."""


def checkpoint_path(pipeline: str) -> Path:
    """The folder of ``pipeline``'s checkpoint store on this machine."""
    return data_dir(pipeline) / "checkpoints"


class Checkpoints:
    """The raw checkpoints of one pipeline on this machine. The store is opened for each
    read or write and closed again (a few hundred microseconds): a long-lived handle shared
    by an agent's threads met LMDB's per-thread reader slots (``MDB_BAD_RSLOT``)."""

    def __init__(self, pipeline: str) -> None:
        self.path = checkpoint_path(pipeline)

    def _store(self, create: bool) -> Any:
        from plexa.data.store import Store

        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return Store(self.path, STORE_SIZE, create=create)

    def read(self, actor: str) -> bytes | None:
        """``actor``'s last checkpoint as stored bytes (None: it has none here)."""
        if not (self.path / "data.mdb").is_file():
            return None
        with self._store(create=False) as store:
            data: bytes | None = store.get_raw(actor)
            return data

    def write(self, actor: str, data: bytes) -> None:
        """Make ``data`` (bytes :meth:`read` gave, on any machine) ``actor``'s last checkpoint."""
        with self._store(create=True) as store:
            store.put_raw(actor, data)
