"""Run names, claimed atomically: of two runs started at once with one name, one is refused.

A claim is an exclusive ``flock`` on ``<runtime root>/<name>.name``, held by the nexus for
the run's life. The kernel drops the lock when the process dies, so a ``kill -9`` never
leaves a name taken; the file itself stays until the name is claimed again or
``plexa cleanup`` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path

from plexa.core.paths import secure_root
from plexa.errors import NameInUse

__all__ = ["NameClaim", "claim_name", "name_file", "remove_stale_claims"]

SUFFIX = ".name"
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def name_file(root: Path, name: str) -> Path:
    """The claim file of run name ``name`` (names that are not plain file names are hashed)."""
    stem = name if _PLAIN.match(name) else hashlib.sha256(name.encode()).hexdigest()[:32]
    return root / (stem + SUFFIX)


class NameClaim:
    """A held run name; :meth:`release` (or the end of the process) frees it."""

    def __init__(self, name: str, path: Path, fd: int) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Free the name and remove its file. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                os.unlink(self.path)  # while still locked: a waiting claimer sees it gone
        os.close(fd)

    def __enter__(self) -> NameClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text())
        return f" (pid {int(data['pid'])}, run {data.get('run_id', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def claim_name(name: str, run_id: str = "") -> NameClaim:
    """Claim run name ``name`` for this process; raises :class:`NameInUse` if a live run
    holds it, :class:`UnsafePath` if the runtime root is not private."""
    path = name_file(secure_root(), name)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NameInUse(
                f"a run named {name!r} is already running{_holder(path)}; choose another name"
            ) from None
        if not _same_file(fd, path):  # its holder removed it as we opened it: try again
            os.close(fd)
            continue
        if os.fstat(fd).st_uid != os.geteuid():
            os.close(fd)
            raise NameInUse(f"{path} belongs to another user")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"name": name, "pid": os.getpid(), "run_id": run_id}).encode(), 0)
        return NameClaim(name, path, fd)


def remove_stale_claims(root: Path) -> list[str]:
    """Remove the claim files in ``root`` that no live process holds; returns their paths."""
    removed = []
    for path in sorted(root.glob("*" + SUFFIX)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: a live run's
            if _same_file(fd, path):
                os.unlink(path)
                removed.append(str(path))
        finally:
            os.close(fd)
    return removed
