"""improv compatibility: bring an improv actor over by changing one import line.

``from improv.actor import Actor, RunManager`` becomes ``from plexa.improv import Actor,
RunManager``. The actor keeps its constructor (``name``, ``store_loc``, ``method``),
``setup``/``runStep``/``stop``, ``self.q_in``/``self.q_out`` with ``get(timeout=)``/``put``,
named links (``Analysis.input_stim_queue`` in the config, ``self.links["input_stim_queue"]``
in the actor), ``self.client.put(obj, name) -> key`` / ``self.client.getID(key)``, and the
setters improv's nexus calls (``setLinks``, ``addLink``, ``setStoreInterface``, ...).
improv's YAML spelling (``package:`` + ``class:``, ``Generator.q_out: [Processor.q_in]``) loads;
``settings: {use_watcher: true}`` records every output (``docs/recording.md``), and
``use_hdd: true`` keeps the store on disk. See ``docs/improv.md``.
"""

from __future__ import annotations

import os
import queue
import time
from typing import Any

from plexa.core.actor import Actor as _PlexaActor
from plexa.core.actor import ports
from plexa.errors import Timeout

__all__ = ["AbstractActor", "Actor", "Empty", "ManagedActor", "RunManager", "StoreInterface"]


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
    """improv's actor API on plexa: override ``setup``, ``runStep`` and ``stop``.

    Every port named in the pipeline's connections exists (``open_ports``): ``q_in`` and
    ``q_out`` as attributes, every link (those two included) in ``self.links`` by name.
    """

    inputs = ports("q_in")
    outputs = ports("q_out")
    open_ports = True
    """Connections may name any port of this actor (improv's named links)."""

    def __init__(
        self, name: str = "", store_loc: str | None = None, method: str = "fork", **kwargs: Any
    ) -> None:
        self.name = name
        self.store_loc = store_loc
        """Where the object store lives (the run's store directory once attached)."""
        self.method = method
        self.links: dict[str, Any] = {}
        self.q_in: _Link | None = None
        self.q_out: _Link | None = None
        self.q_watchout: _Link | None = None
        self.q_comm: Any = None
        self.q_sig: Any = None
        self.client: StoreInterface | None = None
        self.lower_priority = False

    @classmethod
    def _plexa_create(
        cls, name: str, options: dict[str, Any]
    ) -> tuple[_PlexaActor, dict[str, Any]]:
        return cls(name, **options), {}

    def _plexa_attached(self, runtime: Any) -> None:
        for name, port in {**runtime.inputs, **runtime.outputs}.items():
            self.links[name] = _Link(port, name)
        self.q_in = self.links.get("q_in")
        self.q_out = self.links.get("q_out")
        self.client = StoreInterface(self.store)
        paths = getattr(runtime, "paths", None)
        if self.store_loc is None and paths is not None:
            self.store_loc = str(paths.store_dir)

    # improv's nexus calls these; they keep working for code that calls them itself.
    def setStoreInterface(self, client: Any) -> None:
        """Use ``client`` as ``self.client``."""
        self.client = client

    def _getStoreInterface(self) -> Any:
        return self.client

    def setLinks(self, links: dict[str, Any]) -> None:
        """Replace ``self.links``."""
        self.links = links

    def setCommLinks(self, q_comm: Any, q_sig: Any) -> None:
        """Kept for improv code; plexa's runtime carries commands and signals itself."""
        self.q_comm, self.q_sig = q_comm, q_sig

    def setLinkIn(self, q_in: Any) -> None:
        """Set ``self.q_in``."""
        self.q_in = q_in

    def setLinkOut(self, q_out: Any) -> None:
        """Set ``self.q_out``."""
        self.q_out = q_out

    def setLinkWatch(self, q_watch: Any) -> None:
        """Set the watcher link (``put(..., save=...)`` sends to it)."""
        self.q_watchout = q_watch

    def addLink(self, name: str, link: Any) -> None:
        """Add ``link`` to ``self.links`` under ``name``."""
        self.links[name] = link

    def getLinks(self) -> dict[str, Any]:
        """``self.links``."""
        return self.links

    def put(self, idnames: Any, q_out: Any = None, save: Any = None) -> None:
        """Send ``idnames`` on ``q_out`` (default ``self.q_out``); with ``save`` and a watcher
        link, send ``save`` there too."""
        (q_out if q_out is not None else self.q_out).put(idnames)  # type: ignore[union-attr]
        if save is not None and self.q_watchout is not None:
            self.q_watchout.put(save)

    def changePriority(self) -> None:
        """Lower this process's scheduling priority once (improv's ``lower_priority``)."""
        if not self.lower_priority:
            self.lower_priority = True
            os.nice(5)

    def setup(self) -> None:
        """Prepare the actor (improv passes no arguments)."""

    def runStep(self) -> None:
        """One step of work; called in a loop while running (default: idle briefly)."""
        time.sleep(0.01)

    def run_step(self) -> None:
        self.runStep()


class RunManager:
    """improv's run loop, which plexa's runtime replaces: importing it works (improv's demos
    import it), using it says what to do instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "plexa runs setup, runStep and stop itself: subclass plexa.improv.Actor, define "
            "runStep and drop the RunManager loop"
        )


ManagedActor = Actor
AbstractActor = Actor
