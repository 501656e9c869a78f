"""Where a run keeps its files: one runtime directory and one shared-memory directory per run.

Every file a run creates lives under a name derived from its run id, so ``plexa cleanup``
can find everything a killed run left behind.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plexa.core.spec import Settings

__all__ = ["SHM_ROOT", "RunPaths", "new_run_id", "runtime_root"]

SHM_ROOT = Path("/dev/shm")  # where iceoryx2 puts its segments too
IOX_PREFIX = "plx"


def runtime_root() -> Path:
    """The per-user directory holding every run's record and sockets."""
    env = os.environ.get("PLEXA_RUNTIME_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "plexa"
    return Path(f"/tmp/plexa-{os.getuid()}")


def new_run_id() -> str:
    """A short unique run id (short because ipc socket paths are limited to 107 bytes)."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run, derived from its id."""

    run_id: str
    root: Path

    @classmethod
    def for_run(cls, run_id: str) -> RunPaths:
        """Paths of run ``run_id`` under the current runtime root."""
        return cls(run_id, runtime_root())

    @property
    def run_dir(self) -> Path:
        """Sockets, the run record, logs and iceoryx2's node files."""
        return self.root / self.run_id

    @property
    def record(self) -> Path:
        """The run record (JSON, mode 0600)."""
        return self.run_dir / "run.json"

    @property
    def spec_file(self) -> Path:
        """The validated spec handed to every actor process."""
        return self.run_dir / "spec.json"

    @property
    def iox_root(self) -> Path:
        """iceoryx2's root path for this run's domain."""
        return self.run_dir / "iox"

    @property
    def iox_prefix(self) -> str:
        """Prefix of every iceoryx2 file of this run's domain in /dev/shm."""
        return f"{IOX_PREFIX}{self.run_id}_"

    @property
    def shm_dir(self) -> Path:
        """The run's directory in shared memory: the object store and the counters."""
        return SHM_ROOT / f"plexa-{self.run_id}"

    @property
    def store_dir(self) -> Path:
        """The LMDB object store."""
        return self.shm_dir / "store"

    @property
    def counters_file(self) -> Path:
        """The shared counters of links and actors."""
        return self.shm_dir / "counters"

    def endpoint(self, name: str) -> str:
        """A zmq ipc endpoint in the run directory."""
        return f"ipc://{self.run_dir / (name + '.sock')}"

    def log_file(self) -> Path:
        """The merged run log."""
        return self.run_dir / "run.log"


def state_dir() -> Path:
    """Where plexa keeps what outlives a run: ``$XDG_STATE_HOME/plexa`` (or ~/.local/state)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "plexa"


def log_dir() -> Path:
    """Where run logs and failure reports are kept: ``$PLEXA_LOG_DIR``, else under state_dir."""
    env = os.environ.get("PLEXA_LOG_DIR")
    return Path(env) if env else state_dir() / "logs"


def data_dir(pipeline: str) -> Path:
    """Where a pipeline's checkpoints are kept (so that ``--resume`` finds them):
    ``$PLEXA_DATA_DIR/NAME``, else ``state_dir()/data/NAME``."""
    env = os.environ.get("PLEXA_DATA_DIR")
    return (Path(env) if env else state_dir() / "data") / pipeline


def store_dir(settings: Settings, pipeline: str, paths: RunPaths) -> Path:
    """Where a run's object store lives: ``settings.store_path``; with ``use_hdd``, the
    pipeline's data directory; else the run's shared memory (removed with the run)."""
    if settings.store_path:
        return Path(settings.store_path)
    if settings.use_hdd:
        return data_dir(pipeline) / "store"
    return paths.store_dir
