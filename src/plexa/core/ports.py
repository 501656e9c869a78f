"""What actor code talks to: output ports, input ports and the object store, as protocols.

The real implementations (iceoryx2 ports in :mod:`plexa.data.links`, LMDB in
:mod:`plexa.data.store`) and the in-process ones of :mod:`plexa.testing` both satisfy these;
``tests/test_conformance.py`` runs one set of checks against each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

__all__ = ["InputPortLike", "ObjectStore", "OutputPortLike"]


@runtime_checkable
class OutputPortLike(Protocol):
    """An output port: sends to every linked input."""

    def put(self, obj: object, timeout: float | None = None) -> None:
        """Send ``obj`` (waits for room on a ``block`` link; a safe point)."""

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` or raise :class:`plexa.WouldBlock`."""

    def loan(self, shape: Any, dtype: Any = ...) -> AbstractContextManager[Any]:
        """A writable array in the link's memory, sent when the block ends."""


@runtime_checkable
class InputPortLike(Protocol):
    """An input port read with ``get`` (a handler reads it for you)."""

    def get(self, timeout: float | None = None) -> Any:
        """The next message (waits; a safe point); :class:`plexa.Timeout` after ``timeout``."""

    def get_nowait(self) -> Any:
        """The next message, or :class:`plexa.WouldBlock`."""


@runtime_checkable
class ObjectStore(Protocol):
    """improv's store: ``put(obj) -> key``, ``get(key)``; shared by every actor of a run."""

    def put(self, obj: Any, key: str | None = None) -> str:
        """Store ``obj`` (under ``key``, or a new unique key); returns the key."""

    def get(self, key: str) -> Any:
        """The object under ``key``, or :class:`plexa.KeyNotFound`."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""

    def keys(self) -> Iterator[str]:
        """Every key."""

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored."""

    def close(self) -> None:
        """Release the store (the data stays for the run's other processes)."""
