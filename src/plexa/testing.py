"""Test one actor in-process, without processes or shared memory.

>>> h = ActorHarness(RoiTraces, options={"n_rois": 4})   # doctest: +SKIP
>>> h.setup()
>>> h.send("frames", np.zeros((64, 64), np.uint16))
>>> h.sent["traces"]                                       # what the actor put
[array([0., 0., 0., 0.], dtype=float32)]

Messages reach handlers as the runtime delivers them: numpy arrays as read-only arrays.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from plexa.core.actor import Actor, Ports
from plexa.errors import KeyNotFound, Timeout, WouldBlock

__all__ = ["ActorHarness", "MemoryStore"]


def _as_received(obj: object) -> Any:
    """``obj`` as a consumer would get it: a fresh object, arrays read-only."""
    if isinstance(obj, np.ndarray):
        arr = obj.copy()
        arr.flags.writeable = False
        return arr
    return pickle.loads(pickle.dumps(obj, protocol=5))


class MemoryStore:
    """The object store's interface over a dict (values are pickled, as in the real store)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._ids = itertools.count()

    def put(self, obj: object, key: str | None = None) -> str:
        """Store ``obj``; returns its key."""
        key = key if key is not None else f"obj-{next(self._ids)}"
        self._data[key] = pickle.dumps(obj, protocol=5)
        return key

    def get(self, key: str) -> Any:
        """The object under ``key``."""
        try:
            return pickle.loads(self._data[key])
        except KeyError:
            raise KeyNotFound(key) from None

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        return self._data.pop(key, None) is not None

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def keys(self) -> Iterator[str]:
        """Every key."""
        return iter(list(self._data))

    def close(self) -> None:
        """Nothing to release."""


class _Output:
    def __init__(self, name: str, sink: list[Any]) -> None:
        self.name = name
        self._sink = sink

    def put(self, obj: object, timeout: float | None = None) -> None:
        self._sink.append(_as_received(obj))

    def put_nowait(self, obj: object) -> None:
        self.put(obj)

    @contextlib.contextmanager
    def loan(self, shape: tuple[int, ...] | int, dtype: npt.DTypeLike = np.uint8) -> Iterator[Any]:
        array = np.empty(shape, dtype)
        yield array
        self.put(array)


class _Input:
    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: collections.deque[Any] = collections.deque()

    def get(self, timeout: float | None = None) -> Any:
        if not self.queue:
            raise Timeout(f"input {self.name}: nothing queued")
        return self.queue.popleft()

    def get_nowait(self) -> Any:
        if not self.queue:
            raise WouldBlock(f"input {self.name} is empty")
        return self.queue.popleft()


class ActorHarness:
    """Drives one actor in this process: ``setup``, ``send`` to handlers, ``step``, ``stop``.

    ``sent[port]`` lists what the actor put on each output; ``store`` is a :class:`MemoryStore`.
    """

    def __init__(
        self, cls: type[Actor], name: str = "actor", options: dict[str, Any] | None = None
    ) -> None:
        self.actor, self._setup_options = cls._plexa_create(name, dict(options or {}))
        self.actor.name = name
        self.actor.log = logging.getLogger(f"plexa.actor.{name}")
        self.store = MemoryStore()
        self.actor.store = self.store  # type: ignore[assignment]
        self.sent: dict[str, list[Any]] = {p: [] for p in cls.declared_outputs()}
        self._inputs = {p: _Input(p) for p in cls.declared_inputs()}
        self._outputs = {p: _Output(p, s) for p, s in self.sent.items()}
        self.actor.outputs = Ports(dict(self._outputs))  # type: ignore[arg-type]
        self.actor.inputs = Ports(dict(self._inputs))  # type: ignore[arg-type]
        self.actor._plexa_attached(self)

    @property
    def inputs(self) -> dict[str, _Input]:
        """The fake input ports (the improv adapter reads these)."""
        return self._inputs

    @property
    def outputs(self) -> dict[str, _Output]:
        """The fake output ports."""
        return self._outputs

    def setup(self) -> None:
        """Call ``setup`` with the options."""
        self.actor.setup(**self._setup_options)

    def send(self, port: str, obj: object) -> None:
        """Deliver ``obj`` on input ``port``: its handler runs now, or it waits for ``get``."""
        handler = type(self.actor).handlers().get(port)
        if port not in self._inputs:
            raise KeyError(f"no input {port!r} (inputs: {', '.join(self._inputs) or 'none'})")
        if handler is None:
            self._inputs[port].queue.append(_as_received(obj))
        else:
            getattr(self.actor, handler)(_as_received(obj))

    def step(self, times: int = 1) -> None:
        """Call ``run_step`` ``times`` times."""
        for _ in range(times):
            self.actor.run_step()

    def stop(self) -> None:
        """Call ``stop``."""
        self.actor.stop()
