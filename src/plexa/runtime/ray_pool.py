"""``map``/``imap`` on Ray tasks (``settings.pool: ray``), with the local pool's semantics.

The actor process joins the run's Ray cluster (``PLEXA_RAY_ADDRESS``, set by the Ray
launcher) as a driver on first use, with the actor's import path as the job's code search
path, so that Ray's workers import ``fn`` as the actor did. Each item is one Ray task;
at most ``window`` items are taken and not yet yielded; ``safe_point`` is called between
results and at least every 50 ms while waiting, so a pause holds new tasks back and a
stop or abort cancels the tasks in flight (:func:`ray.cancel`), and waits for them to end,
before it propagates.
An exception raised by ``fn`` comes back as in the local pool: the same type when it can
be pickled, with a :class:`~plexa.errors.RemoteError` carrying the task's traceback as its
cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from plexa.core.paths import RAY_ADDRESS_ENV, import_path_from_env
from plexa.errors import PlexaError, RemoteError
from plexa.runtime.pool import _describe

__all__ = ["CANCEL_WAIT_S", "RayPool"]

_POLL_S = 0.05
CANCEL_WAIT_S = 5.0
"""How long a stop or abort waits for the cancelled tasks to end."""


def _run_task(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """What a Ray task runs: ``fn(item)``, or the description of what it raised."""
    try:
        return True, fn(item)
    except Exception as exc:
        return False, _describe(exc)


class RayPool:
    """Ray tasks running ``fn(item)`` for :meth:`imap` and :meth:`map` (the interface of
    :class:`plexa.runtime.pool.WorkerPool`). ``size`` is the number of tasks in flight
    (default: the cluster's CPUs); ``window`` bounds what is taken and not yet yielded
    (default ``2 * size``)."""

    def __init__(
        self,
        size: int | None = None,
        *,
        safe_point: Callable[[], None] = lambda: None,
        window: int | None = None,
        address: str | None = None,
    ) -> None:
        self.address = address or os.environ.get(RAY_ADDRESS_ENV, "")
        if not self.address:
            raise PlexaError(f"pool: ray needs the Ray cluster's address ({RAY_ADDRESS_ENV})")
        self._size = size
        self._window = window
        self._safe_point = safe_point
        self._task: Any = None
        self._joined = False
        self._joining: threading.Thread | None = None
        self._join_error: list[BaseException] = []
        self._owner: object | None = None
        self._inflight: dict[Any, int] = {}
        self._closed = False
        self.stats = {"tasks": 0}
        """Tasks submitted."""

    @property
    def pids(self) -> list[int]:
        """Ray's workers are the cluster's, not the pool's: none to list."""
        return []

    def _join(self) -> None:
        """Join the cluster as a driver. That takes seconds (more on a busy machine than
        ``hang_timeout``), so it runs in a thread while this one passes safe points; a stop
        raised meanwhile leaves it running, and the next call waits for it."""
        if self._joined:
            return
        import ray

        if self._joining is None and not ray.is_initialized():
            self._joining = threading.Thread(target=self._init, name="plexa-ray-join", daemon=True)
            self._joining.start()
        while self._joining is not None and self._joining.is_alive():
            self._safe_point()
            self._joining.join(_POLL_S)
        self._joining = None
        if self._join_error:
            raise self._join_error.pop()
        self._task = ray.remote(max_retries=0)(_run_task)
        if self._size is None:
            cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
            self._size = max(1, int(cpus))
        if self._window is None:
            self._window = 2 * self._size
        self._joined = True

    def _init(self) -> None:
        import ray

        quiet = _NotMainThread()  # plexa's own SIGTERM handler is the one to keep
        logging.getLogger("ray._private.worker").addFilter(quiet)
        try:
            ray.init(
                address=self.address,
                log_to_driver=False,
                configure_logging=False,
                job_config=ray.job_config.JobConfig(code_search_path=import_path_from_env()),
            )
        except BaseException as exc:
            self._join_error.append(exc)
        finally:
            logging.getLogger("ray._private.worker").removeFilter(quiet)

    @property
    def size(self) -> int:
        """Tasks in flight at most."""
        self._join()
        assert self._size is not None
        return self._size

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``[fn(x) for x in items]``, computed by Ray tasks."""
        return list(self.imap(fn, items))

    def imap(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        ordered: bool = True,
        enumerated: bool = False,
    ) -> Iterator[Any]:
        """Results of ``fn`` over ``items`` (taken lazily) as they complete: in input order
        when ``ordered``, else in completion order; ``enumerated`` yields ``(index, result)``.
        Starting another imap cancels this one."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        self._join()
        return self._iterate(fn, iter(items), ordered, enumerated)

    def _iterate(
        self, fn: Any, items: Iterator[Any], ordered: bool, enumerated: bool
    ) -> Iterator[Any]:
        import ray

        token = object()
        if self._owner is not None:
            self._cancel()
        self._owner = token
        waiting: list[tuple[int, Any]] = []
        done: dict[int, Any] = {}
        taken = given = 0
        exhausted = False
        size, window = self.size, self._window or 1
        try:
            while True:
                self._safe_point()
                if self._owner is not token:
                    raise RuntimeError("this imap was cancelled by a later call or by close()")
                while not exhausted and taken - given < window:
                    try:
                        waiting.append((taken, next(items)))
                        taken += 1
                    except StopIteration:
                        exhausted = True
                while waiting and len(self._inflight) < size:
                    index, item = waiting.pop(0)
                    self._inflight[self._task.remote(fn, item)] = index
                    self.stats["tasks"] += 1
                key = given if ordered else next(iter(done), -1)
                if key in done:
                    given += 1
                    value = done.pop(key)
                    yield (key, value) if enumerated else value
                elif exhausted and given == taken:
                    return
                elif self._inflight:
                    ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=_POLL_S)
                    for ref in ready:
                        done[self._inflight.pop(ref)] = self._result(ref)
        finally:
            if self._owner is token:
                self._cancel()
                self._owner = None

    def _result(self, ref: Any) -> Any:
        import ray

        try:
            ok, value = ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise PlexaError(f"a Ray task of the pool failed: {exc}") from exc
        if ok:
            return value
        exc_, kind, text, tb = value
        cause = RemoteError(f"{kind}: {text}" if text else kind, tb, kind)
        if isinstance(exc_, BaseException):
            raise exc_ from cause
        raise cause

    def _cancel(self) -> None:
        """Cancel the tasks in flight (their results are dropped) and wait until they have
        ended: a running task learns of its cancellation a moment later, and may finish
        meanwhile. Once this returns none of them runs, unless one held out for
        ``CANCEL_WAIT_S``."""
        if not self._inflight:
            return
        import ray

        refs = list(self._inflight)
        self._inflight.clear()
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S, fetch_local=False)

    def close(self) -> None:
        """Cancel what is in flight and leave the cluster. Idempotent."""
        self._closed = True
        self._cancel()
        self._owner = None
        if self._joining is not None:
            self._joining.join(timeout=30)
            self._joined = self._joined or not self._joining.is_alive()
        if self._joined:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            self._joined = False

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that a driver joining outside the main thread sets no SIGTERM
    handler (plexa's own must stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()
