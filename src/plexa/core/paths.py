"""Where a run keeps its files: one runtime directory and one shared-memory directory per run,
and the checks that keep other local users out of them.

Every file a run creates lives under a name derived from its run id, so ``plexa cleanup``
can find everything a killed run left behind. The runtime root and every run directory
must be owned by the user and writable by nobody else (else :class:`UnsafePath`); files
in them are written to a fresh ``O_EXCL|O_NOFOLLOW`` temporary file and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plexa.core.spec import Settings

from plexa.errors import UnsafePath

__all__ = [
    "SHM_ROOT",
    "RunPaths",
    "actor_env",
    "check_private_dir",
    "create_run_dir",
    "import_path_from_env",
    "new_run_id",
    "open_private",
    "runtime_root",
    "secure_root",
    "write_private",
]

SHM_ROOT = Path("/dev/shm")  # where iceoryx2 puts its segments too
IOX_PREFIX = "plx"
RUN_DIR_ENV = "PLEXA_RUN_DIR"
"""Set in every actor process (and so inherited by the processes it starts): its run."""
SYS_PATH_ENV = "PLEXA_SYS_PATH"
"""The nexus's ``sys.path`` entries, given to every actor process through its environment."""
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def runtime_root() -> Path:
    """The per-user directory holding every run's record and sockets (not checked here:
    :func:`secure_root` creates and checks it).

    ``$PLEXA_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/plexa`` (a directory only the user can
    enter), else ``/tmp/plexa-<uid>``, which another user could create first: it is used
    only if it turns out to be the user's own, mode 0700 or stricter.
    """
    env = os.environ.get("PLEXA_RUNTIME_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "plexa"
    return Path(f"/tmp/plexa-{os.getuid()}")


def _who(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def private_dir_problem(path: Path) -> str:
    """Why another local user could control directory ``path`` (empty if none could)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "it does not exist"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.geteuid():
        return f"it belongs to {_who(st.st_uid)}, not to you ({_who(os.geteuid())})"
    if st.st_mode & 0o022:
        return f"group or others may write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    try:
        parent = os.stat(path.parent)
    except OSError:
        return ""
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        # another user could rename it away and put their own in its place
        return f"its parent {path.parent} is writable by others and not sticky"
    return ""


def check_private_dir(path: Path, what: str = "runtime directory") -> Path:
    """``path`` if it is a directory of the user's that no one else may write to, else
    :class:`UnsafePath` saying why and what to do."""
    problem = private_dir_problem(path)
    if problem:
        raise UnsafePath(
            f"refusing to use {what} {path}: {problem}; remove it, or set PLEXA_RUNTIME_DIR "
            "to a directory of yours with mode 0700"
        )
    return path


def secure_root(create: bool = True) -> Path:
    """The runtime root, created mode 0700 if missing, after checking nobody else controls
    it. Raises :class:`UnsafePath`."""
    root = runtime_root()
    if create and not os.path.lexists(root):
        if os.environ.get("PLEXA_RUNTIME_DIR"):
            root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # made meanwhile: the check decides
            os.mkdir(root, 0o700)
    return check_private_dir(root)


def new_run_id() -> str:
    """A short unique run id (short because ipc socket paths are limited to 107 bytes)."""
    return secrets.token_hex(4)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace file ``path`` with ``data`` atomically: readers see the old or the new
    content, never a part. The data goes to a new temporary file next to it, opened with
    ``O_EXCL|O_NOFOLLOW`` (so a planted file or link is never written through), then
    renamed over ``path``. Raises ``OSError`` (the old file is then left as it was)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _NEW_FILE, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_private(path: Path) -> int:
    """A file descriptor appending to ``path`` (created mode 0600), refusing a symbolic
    link or a file that belongs to someone else (:class:`UnsafePath`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePath(f"refusing to write to {path}: it belongs to another user")
    return fd


def create_run_dir(paths: RunPaths) -> None:
    """Create the run's directory (mode 0700) in a checked runtime root; raises
    :class:`UnsafePath` if either is not private, or if the directory exists already."""
    check_private_dir(paths.root)
    try:
        os.mkdir(paths.run_dir, 0o700)
    except FileExistsError:
        raise UnsafePath(
            f"refusing to use run directory {paths.run_dir}: it exists already"
        ) from None
    check_private_dir(paths.run_dir, "run directory")


def actor_env(paths: RunPaths, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an actor process of run ``paths``: ``base`` (default: this
    process's) plus the run directory and this process's import path.

    The import path travels in the environment, not in a file, so no other user can ever
    put code on an actor's ``sys.path``; processes the actor starts inherit
    ``PLEXA_RUN_DIR``, which is how ``plexa cleanup`` finds them after a ``kill -9``.
    """
    env = dict(os.environ if base is None else base)
    env[RUN_DIR_ENV] = str(paths.run_dir)
    env[SYS_PATH_ENV] = os.pathsep.join(p for p in sys.path if p)
    return env


def import_path_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The import path the nexus gave this actor process (see :func:`actor_env`)."""
    value = (os.environ if environ is None else environ).get(SYS_PATH_ENV, "")
    return [p for p in value.split(os.pathsep) if p]


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run, derived from its id."""

    run_id: str
    root: Path

    @classmethod
    def for_run(cls, run_id: str) -> RunPaths:
        """Paths of run ``run_id`` under the runtime root, which is created if missing and
        checked (raises :class:`UnsafePath` if another user could control it)."""
        return cls(run_id, secure_root())

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

    def actor_spec_file(self, actor: str) -> Path:
        """The spec handed to ``actor`` when it was added to the live run (the run's spec
        plus that actor); actors started with the run read :attr:`spec_file`."""
        return self.run_dir / f"spec-{actor}.json"

    def spec_of(self, actor: str) -> Path:
        """The spec ``actor`` reads: its own if it was added to the live run, else the run's."""
        added = self.actor_spec_file(actor)
        return added if added.exists() else self.spec_file

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


ENV_ACTOR = "PLEXA_ACTOR"
"""Set in every actor process (with ``PLEXA_RUN_DIR``): the actor's name. Together they
mark everything an actor starts, even in another session."""
RAY_ADDRESS_ENV = "PLEXA_RAY_ADDRESS"
"""Set in the actor processes of a run on Ray: the cluster's address (``pool: ray`` joins it)."""

RUN_ID_LENGTH = 8
"""Hex digits of a run id (:func:`new_run_id`)."""


def run_log(run_name: str, run_id: str) -> Path:
    """The merged log of run ``run_name`` with id ``run_id``: ``log_dir()/NAME-ID.log``.

    Named by the run's name (``--name``, else the pipeline's), so ``plexa logs NAME`` finds
    it after the run has ended; the id keeps runs of the same name apart.
    """
    return log_dir() / f"{run_name}-{run_id}.log"


def run_report(run_name: str, run_id: str) -> Path:
    """The run's report, beside its log: ``log_dir()/NAME-ID.report.json``."""
    return log_dir() / f"{run_name}-{run_id}.report.json"


def parse_run_file(path: Path) -> tuple[str, str] | None:
    """``(run name, run id)`` of a file named by :func:`run_log` / :func:`run_report`."""
    stem = path.name.removesuffix(".report.json").removesuffix(".log")
    if stem == path.name:
        return None
    name, _, run_id = stem.rpartition("-")
    if not name or len(run_id) != RUN_ID_LENGTH or any(c not in "0123456789abcdef" for c in run_id):
        return None
    return name, run_id
