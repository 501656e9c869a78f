"""The actor model as users see it: :class:`Actor`, :class:`AsyncActor`, ``@on``, ``ports``.

Nothing here runs anything: :mod:`plexa.runtime.process` drives an actor inside its process and
:mod:`plexa.testing` drives one in-process for unit tests.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from plexa.data.inputs import InputPort
    from plexa.data.links import OutputPort
    from plexa.data.store import Store

__all__ = ["Actor", "AsyncActor", "Ports", "command", "on", "ports"]

F = TypeVar("F", bound=Callable[..., Any])
P = TypeVar("P")


def on(port: str) -> Callable[[F], F]:
    """Mark a method as the handler of input ``port``; it is called once per message.

    The message is passed as the only argument. A numpy array arrives as a read-only view
    into shared memory that stays valid while the handler holds it; call ``.copy()`` to own it.
    """

    def mark(fn: F) -> F:
        fn.__plexa_input__ = port  # type: ignore[attr-defined]
        return fn

    return mark


def command(fn: F) -> F:
    """Mark a method as invocable from outside (``plexa ctl NAME invoke ACTOR METHOD``).

    It runs in the actor's process at its next safe point; its return value (or the
    exception it raises, with traceback) goes back to the caller.
    """
    fn.__plexa_command__ = True  # type: ignore[attr-defined]
    return fn


class Ports(Generic[P]):
    """The ports of one direction on an actor: ``self.outputs.frames``, ``self.outputs['frames']``.

    On the class, the same attribute lists the declared port names (see :func:`ports`).
    """

    def __init__(self, ports: dict[str, P]) -> None:
        self._ports = ports

    def __getattr__(self, name: str) -> P:
        try:
            return self.__dict__["_ports"][name]  # type: ignore[no-any-return]
        except KeyError:
            known = ", ".join(self.__dict__["_ports"]) or "none"
            raise AttributeError(f"no port {name!r} (ports: {known})") from None

    def __getitem__(self, name: str) -> P:
        return self._ports[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def __contains__(self, name: object) -> bool:
        return name in self._ports


class _PortDecl:
    """Class attribute declaring port names; on an instance it yields the live :class:`Ports`."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_plexa_" + name

    @overload
    def __get__(self, obj: None, owner: type) -> _PortDecl: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Ports[Any]: ...
    def __get__(self, obj: object | None, owner: type) -> _PortDecl | Ports[Any]:
        if obj is None:
            return self
        ports: Ports[Any] | None = obj.__dict__.get(self.attr)
        if ports is None:
            raise RuntimeError("ports are attached when the actor is set up by plexa")
        return ports

    def __set__(self, obj: object, value: Ports[Any]) -> None:
        obj.__dict__[self.attr] = value


def ports(*names: str) -> Any:
    """Declare an actor's input or output ports: ``outputs = plexa.ports("frames")``."""
    return _PortDecl(tuple(names))


class Actor:
    """Base class of a plexa actor; each actor runs in a process of its own.

    Subclasses implement ``setup(**options)`` (given the ``options:`` from the pipeline file),
    and either ``run_step()`` (called in a loop while running, signals applied between calls)
    or ``@plexa.on("port")`` handlers (called once per message), and optionally ``stop()``.
    """

    inputs: Ports[InputPort] = ports()
    """Input ports: declared on the class with :func:`ports`; ``@on`` handlers add theirs."""
    outputs: Ports[OutputPort] = ports()
    """Output ports, declared on the class with :func:`ports`."""

    name: str = ""
    """The actor's name in the pipeline."""
    store: Store
    """The run's shared object store."""
    log: logging.Logger
    """A logger named after the actor."""

    def setup(self) -> None:
        """Prepare the actor; options from the pipeline file arrive as keyword arguments."""

    def run_step(self) -> None:
        """Do one step of work; called in a loop while running. Default: handlers only."""
        raise NotImplementedError

    def stop(self) -> None:
        """Release what ``run`` used; called when the actor stops."""

    def safe_point(self) -> None:
        """Apply pending signals now: returns at once when none is pending, blocks while
        paused, raises :class:`plexa.Aborted` on abort. Call it often inside long steps."""
        hook = self.__dict__.get("_plexa_safe_point")
        if hook is not None:
            hook()

    def progress(
        self, done: float, total: float | None = None, message: str = "", **fields: float | str
    ) -> None:
        """Report progress; published at most once per ``progress_delta`` seconds.

        ``fields`` are named values that go with it (``self.progress(i, n, loss=0.31)``):
        numbers or short texts, shown in the status document (``progress.fields``) and
        the progress events.
        """
        self._plexa_hook("progress", done, total, message, fields)

    def improved(self, result: Any, score: float | None = None) -> None:
        """Report a better partial result; published at most once per ``improved_delta`` s.

        The last one is kept: a client attaching later sees it, and ``abort`` reports it.
        """
        self._plexa_hook("improved", result, score)

    def map(self, fn: Callable[[Any], Any], items: Any) -> list[Any]:
        """``[fn(x) for x in items]`` over the actor's worker processes (``fn`` must be a
        module-level function); pause and abort apply while it runs."""
        return list(self.imap(fn, items))

    def imap(
        self, fn: Callable[[Any], Any], items: Any, ordered: bool = True, enumerated: bool = False
    ) -> Iterator[Any]:
        """Results of ``fn`` over ``items`` as they complete, from a bounded window of work
        in flight; ``enumerated`` yields ``(index, result)``."""
        hooks = self.__dict__.get("_plexa_hooks")
        if hooks is None:  # outside a run (plexa.testing): in this process, in order
            return iter((i, fn(x)) if enumerated else fn(x) for i, x in enumerate(items))
        result: Iterator[Any] = hooks.pool().imap(fn, items, ordered=ordered, enumerated=enumerated)
        return result

    def on_set(self, key: str, value: Any) -> None:
        """Apply ``plexa ctl NAME set ACTOR KEY VALUE`` (at a safe point). Default: set the
        attribute ``key``; override to react (e.g. rebuild something)."""
        setattr(self, key, value)

    def _plexa_hook(self, name: str, *args: Any) -> None:
        hooks = self.__dict__.get("_plexa_hooks")
        if hooks is not None:
            getattr(hooks, name)(*args)
        else:  # outside a run (plexa.testing): keep them for inspection
            self.__dict__.setdefault(f"_plexa_{name}_calls", []).append(args)

    @classmethod
    def _plexa_create(cls, name: str, options: dict[str, Any]) -> tuple[Actor, dict[str, Any]]:
        """Instantiate for a run; returns the actor and the keyword arguments for ``setup``."""
        return cls(), options

    def _plexa_attached(self, runtime: Any) -> None:
        """Called once ports, store and logger are attached (a hook for adapters)."""

    @classmethod
    def commands(cls) -> set[str]:
        """Names of the methods marked with :func:`command`."""
        return {
            attr
            for klass in cls.__mro__
            for attr, value in vars(klass).items()
            if getattr(value, "__plexa_command__", False)
        }

    @classmethod
    def handlers(cls) -> dict[str, str]:
        """Map each input port with an ``@on`` handler to the handler's method name."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                port = getattr(value, "__plexa_input__", None)
                if port is not None:
                    found[port] = attr
        return found

    @classmethod
    def declared_inputs(cls) -> tuple[str, ...]:
        """Every input port name: the declared ones, then those with handlers."""
        decl = cls.__dict__.get("inputs") or _find_decl(cls, "inputs")
        names = list(decl.names if isinstance(decl, _PortDecl) else ())
        names += [p for p in cls.handlers() if p not in names]
        return tuple(names)

    @classmethod
    def declared_outputs(cls) -> tuple[str, ...]:
        """Every output port name the class declares."""
        decl = _find_decl(cls, "outputs")
        return decl.names if decl is not None else ()

    @classmethod
    def outputs_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The output ports of an actor of this class given its ``options``: the declared
        ones, unless the class makes them from its options (a player of recorded channels)."""
        return cls.declared_outputs()

    @classmethod
    def has_run_step(cls) -> bool:
        """True when the class overrides :meth:`run_step`."""
        return any("run_step" in vars(k) for k in cls.__mro__ if k is not Actor)

    @classmethod
    def setup_signature(cls) -> inspect.Signature:
        """The signature of ``setup``, against which options are checked."""
        return inspect.signature(cls.setup)


def _find_decl(cls: type, attr: str) -> _PortDecl | None:
    for klass in cls.__mro__:
        value = vars(klass).get(attr)
        if isinstance(value, _PortDecl):
            return value
    return None


class AsyncActor(Actor):
    """An actor whose work is one coroutine, ``async def run()``.

    ``await self.checkpoint()`` is its safe point: pause waits there. Stop cancels ``run``.
    """

    async def run(self) -> None:
        """The actor's work; runs until it returns or the actor is stopped."""
        raise NotImplementedError

    async def checkpoint(self) -> None:
        """Apply pending signals (pause waits here); call it regularly inside ``run``."""
        hook = self.__dict__.get("_plexa_async_safe_point")
        if hook is not None:
            await hook()
