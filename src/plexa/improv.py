"""improv compatibility: bring an improv actor over by changing one import line.

``from improv.actor import Actor`` becomes ``from plexa.improv import Actor``. The actor keeps
its constructor, ``setup``/``runStep``/``stop``, ``self.q_in``/``self.q_out`` with
``get(timeout=)``/``put``, and ``self.client.put(obj, name) -> key`` / ``self.client.getID(key)``.
improv's YAML spelling (``package:`` + ``class:``, ``Generator.q_out: [Processor.q_in]``) loads.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from plexa.core.actor import Actor as _PlexaActor
from plexa.core.actor import ports
from plexa.errors import Timeout

__all__ = ["Actor", "Empty", "ManagedActor", "StoreInterface"]


class Empty(queue.Empty, Timeout):
    """Raised by ``q_in.get(timeout=...)`` when nothing came ; a ``queue.Empty``."""


class _Link:
    """improv's Link interface over a plexa port."""

    def __init__(self, port: Any, name: str) -> None:
        self._port = port
        self.name = name

    def put(self, obj: object) -> None:
        """Send ``obj`` (waits for room on a ``block`` link)."""
        self._port.put(obj)

    def put_nowait(self, obj: object) -> None:
        """Send ``obj`` or raise ``queue.Full``."""
        try:
            self._port.put_nowait(obj)
        except Exception as exc:
            raise queue.Full(str(exc)) from exc

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` s, else :class:`Empty` (``queue.Empty``)."""
        try:
            return self._port.get(timeout=timeout)
        except Timeout as exc:
            raise Empty(str(exc)) from None

    def get_nowait(self) -> Any:
        """The next message or :class:`Empty`."""
        return self.get(timeout=0)


class StoreInterface:
    """improv's store client over the plexa object store."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def put(self, obj: object, object_name: str | None = None) -> str:
        """Store ``obj``; returns its key (improv's ``object_name`` is kept only as a label)."""
        key: str = self._store.put(obj)
        return key

    def getID(self, obj_id: str) -> Any:
        """The object stored under ``obj_id``."""
        return self._store.get(obj_id)

    get = getID

    def getList(self, ids: list[str]) -> list[Any]:
        """The objects stored under each of ``ids``."""
        return [self._store.get(i) for i in ids]

    def delete(self, obj_id: str) -> None:
        """Remove ``obj_id``."""
        self._store.delete(obj_id)


class Actor(_PlexaActor):
    """improv's actor API on plexa: override ``setup``, ``runStep`` and ``stop``."""

    inputs = ports("q_in")
    outputs = ports("q_out")

    def __init__(self, name: str = "", *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.links: dict[str, Any] = {}
        self.q_in: _Link | None = None
        self.q_out: _Link | None = None
        self.client: StoreInterface | None = None

    @classmethod
    def _plexa_create(
        cls, name: str, options: dict[str, Any]
    ) -> tuple[_PlexaActor, dict[str, Any]]:
        return cls(name, **options), {}

    def _plexa_attached(self, runtime: Any) -> None:
        if "q_in" in runtime.inputs:
            self.q_in = _Link(runtime.inputs["q_in"], "q_in")
            self.links["q_in"] = self.q_in
        if "q_out" in runtime.outputs:
            self.q_out = _Link(runtime.outputs["q_out"], "q_out")
            self.links["q_out"] = self.q_out
        self.client = StoreInterface(self.store)

    def setup(self) -> None:
        """Prepare the actor (improv passes no arguments)."""

    def runStep(self) -> None:
        """One step of work; called in a loop while running (default: idle briefly)."""
        time.sleep(0.01)

    def run_step(self) -> None:
        self.runStep()


ManagedActor = Actor
