"""Every error plexa raises, rooted at :class:`PlexaError`.

The tree::

    PlexaError
    ├── ConfigError            a pipeline file is wrong (carries every issue found)
    ├── UnsafePath             a runtime directory or file another user could control
    ├── NameInUse              another live run already holds this run name
    ├── ActorFailed            an actor crashed, raised, hung or was killed (carries a report)
    ├── LinkError
    │   ├── LinkClosed         ``get`` on an input whose every producer is gone for good
    │   ├── LinkBroken         the link's shared memory cannot give a sample to send
    │   ├── WouldBlock         a ``*_nowait`` call found no message or no room
    │   └── OutOfSharedMemory  no room in /dev/shm for a link's samples
    ├── PayloadError           an object cannot be sent (names the actor, port and reason)
    ├── StoreError
    │   ├── StoreFull          the object store has no room left
    │   └── KeyNotFound        ``get`` of a key that was never put or was deleted
    ├── RecordingError         a recording could not be written or read (``disk_full``)
    ├── InvalidTransition      a lifecycle signal that makes no sense in the current state
    ├── RemoteError            an error raised in another process, with its traceback
    └── Timeout                a deadline passed

    Aborted (a BaseException)  raised at a safe point when the actor's work is aborted

``Timeout`` also derives from the builtin ``TimeoutError`` and ``KeyNotFound`` from
``KeyError`` so generic handlers keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Aborted",
    "ActorFailed",
    "ConfigError",
    "ConfigIssue",
    "InvalidTransition",
    "KeyNotFound",
    "LinkBroken",
    "LinkClosed",
    "LinkError",
    "NameInUse",
    "OutOfSharedMemory",
    "PayloadError",
    "PlexaError",
    "RecordingError",
    "RemoteError",
    "StoreError",
    "StoreFull",
    "Timeout",
    "UnsafePath",
    "WouldBlock",
]


class PlexaError(Exception):
    """Root of every error plexa raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a pipeline file, located as precisely as the file allows."""

    file: str
    """Path of the file, as given."""
    line: int | None
    """1-based line of the offending key, when known."""
    key: str
    """Dotted path of the offending key (``actors.camera.options.rate``)."""
    message: str
    """What is wrong and what was expected."""
    hint: str = ""
    """A suggested fix (``did you mean 'traces'?``), or empty."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.key}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(PlexaError):
    """A pipeline file is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class UnsafePath(PlexaError):
    """A runtime root, run directory or run file that another user could own, replace or
    write; plexa refuses to use it (the CLI exits with status 2)."""


class NameInUse(PlexaError):
    """Another live run holds this run name; choose another name (the CLI exits with 2)."""


class ActorFailed(PlexaError):
    """One or more actors failed; ``report`` maps each actor to what happened to it."""

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        self.report = report or {}
        super().__init__(message)


class LinkError(PlexaError):
    """A link could not deliver or receive (also: a handler kept too many received arrays)."""


class LinkClosed(LinkError):
    """Every producer feeding this input is gone for good and nothing is queued: no more
    messages will come (raised by ``get`` and ``get_nowait``)."""


class LinkBroken(LinkError):
    """The link's shared memory could not give a sample to send (``put``, ``loan``)."""


class WouldBlock(LinkError):
    """A non-blocking call found no message to take or no room to put one."""


class OutOfSharedMemory(LinkError):
    """/dev/shm has no room for the samples a message needs; nothing was sent, and the
    pages were never touched (so no SIGBUS)."""


class PayloadError(PlexaError):
    """An object cannot be sent over a link, or a received one cannot be read; the message
    names the actor, the port and the reason, and the object was not counted as sent."""


class StoreError(PlexaError):
    """The object store failed."""


class StoreFull(StoreError):
    """The object store has no room for the value."""


class KeyNotFound(StoreError, KeyError):
    """The key was never put in the store, or was deleted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "key not found"


class RecordingError(PlexaError):
    """A recording could not be written (``disk_full`` when the disk ran out) or read."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        self.disk_full = disk_full
        super().__init__(message)


class EndpointInUse(PlexaError):
    """A fixed control or events endpoint (``settings.control`` / ``settings.output``) could
    not be bound: another process holds the port, or the address is not this host's."""


class InvalidTransition(PlexaError):
    """A lifecycle signal was refused because it makes no sense in the current state."""


class RemoteError(PlexaError):
    """An exception raised in another process; ``traceback`` is its formatted traceback."""

    def __init__(self, message: str, traceback: str = "", kind: str = "") -> None:
        self.traceback = traceback
        self.kind = kind
        super().__init__(message)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n{self.traceback}" if self.traceback else base


class Timeout(PlexaError, TimeoutError):
    """A deadline passed before the awaited condition came true."""


class Aborted(BaseException):
    """Raised at a safe point when the actor's current work is aborted.

    A ``BaseException`` so that ``except Exception`` in user code cannot swallow it.
    """
