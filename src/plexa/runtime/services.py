"""Long computations inside an actor: progress, improved results, checkpoints, set, invoke.

The runtime owns one :class:`ServiceHooks` per actor process; the actor's ``progress``,
``improved``, ``map``/``imap`` reach it, and the runtime calls :meth:`at_safe_point` at each
safe point so that rate-limited reports and due checkpoints go out there.
"""

from __future__ import annotations

import contextlib
import errno
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from plexa.core import messages as msgs
from plexa.core.actor import Actor
from plexa.core.options import option_problem
from plexa.core.spec import ActorSpec, PipelineSpec
from plexa.data.checkpoints import STORE_SIZE, checkpoint_path
from plexa.errors import StoreError, StoreFull
from plexa.runtime.rates import Limiter

__all__ = ["ServiceHooks", "apply_set", "call_command", "to_wire"]

MAX_WIRE = 64 * 1024
"""Results larger than this (encoded) travel as a summary only."""


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"cannot send {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def to_wire(value: Any) -> tuple[Any, str]:
    """``value`` in a form a control message can carry (or None), and a short summary."""
    summary = repr(value)
    if len(summary) > 200:
        summary = summary[:197] + "..."
    try:
        data = _encoder.encode(value)
    except (NotImplementedError, TypeError, OverflowError):
        return None, summary
    if len(data) > MAX_WIRE:
        return None, summary
    return msgspec.msgpack.decode(data), summary


class ServiceHooks:
    """Rate limits, checkpoints and the worker pool of one actor process."""

    def __init__(
        self,
        spec: PipelineSpec,
        aspec: ActorSpec,
        send: Any,
        safe_point: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.aspec = aspec
        self.send = send
        self.safe_point = safe_point
        self.clock = clock
        self.actor: Actor | None = None

        def restamp(msg: Any) -> Any:
            return msgspec.structs.replace(msg, t=time.time())

        self._progress: Limiter[msgs.Progress] = Limiter(
            aspec.progress_delta, send, restamp=restamp, clock=clock
        )
        self._improved: Limiter[msgs.Improved] = Limiter(
            aspec.improved_delta, send, restamp=restamp, clock=clock
        )
        self.best: msgs.Improved | None = None
        self._ckpt_store: Any = None
        self._next_ckpt = float("inf")
        self._ckpt_failures = 0
        self._ckpt_warned = 0.0
        self._pool: Any = None
        self.next_due = float("inf")
        """Earliest time :meth:`at_safe_point` has something to do."""

    # ----- progress and improved ------------------------------------------------------------
    def progress(
        self,
        done: float,
        total: float | None,
        message: str,
        fields: dict[str, float | int | str] | None = None,
    ) -> None:
        """Report progress (sent at most every ``progress_delta`` s; the newest wins)."""
        total = None if total is None else float(total)
        kept = {k: _field(k, v) for k, v in (fields or {}).items()}
        self._progress.offer(msgs.Progress(float(done), total, message, time.time(), kept))
        self.next_due = min(self.next_due, self._progress.due)

    def improved(self, result: Any, score: float | None) -> None:
        """Report a better partial result (sent at most every ``improved_delta`` s)."""
        wire, summary = to_wire(result)
        msg = msgs.Improved(wire, None if score is None else float(score), summary, time.time())
        self.best = msg
        self._improved.offer(msg)
        self.next_due = min(self.next_due, self._improved.due)

    def at_safe_point(self) -> None:
        """Send reports held back by the rate limits, and take a checkpoint when one is due."""
        self._progress.tick()
        self._improved.tick()
        self.next_due = min(self._next_ckpt, self._progress.due, self._improved.due)
        if self.clock() >= self._next_ckpt:
            self.checkpoint()

    def flush(self) -> None:
        """Send whatever the rate limits still hold (at stop)."""
        self._progress.flush()
        self._improved.flush()

    # ----- checkpoints ------------------------------------------------------------------------
    @property
    def checkpointing(self) -> bool:
        """True when the actor defines ``get_state`` and ``set_state``."""
        return self.actor is not None and all(
            callable(getattr(self.actor, m, None)) for m in ("get_state", "set_state")
        )

    def _store(self) -> Any:
        if self._ckpt_store is None:
            from plexa.data.store import Store

            path = checkpoint_path(self.spec.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._ckpt_store = Store(path, STORE_SIZE, create=True)
        return self._ckpt_store

    def start_checkpoints(self) -> None:
        """Arm periodic checkpoints (the first is skipped: it is only the start state)."""
        if self.checkpointing and self.aspec.checkpoint_delta > 0:
            self._next_ckpt = self.clock() + self.aspec.checkpoint_delta
            self.next_due = min(self.next_due, self._next_ckpt)

    def checkpoint(self) -> bool:
        """Write the actor's state now; one LMDB transaction, so never half-written.

        A write that fails (a full disk, say) leaves the previous checkpoint as it was and
        is reported as a warning (``checkpoint failed: no space left on PATH``), never as a
        failure of the actor: the next one is tried ``checkpoint_delta`` later. Returns
        True if the state was written. Errors raised by ``get_state`` propagate.
        """
        if not self.checkpointing:
            return False
        assert self.actor is not None
        if self.aspec.checkpoint_delta > 0:
            self._next_ckpt = self.clock() + self.aspec.checkpoint_delta
        state = self.actor.get_state()  # type: ignore[attr-defined]
        try:
            self._store().put({"state": state, "t": time.time()}, key=self.aspec.name)
        except (StoreError, OSError) as exc:
            self._checkpoint_failed(exc)
            return False
        if self._ckpt_failures:
            self.actor.log.info("checkpoints written again after %d failed", self._ckpt_failures)
            self._ckpt_failures = 0
        return True

    def _checkpoint_failed(self, exc: Exception) -> None:
        """Say why a checkpoint was not written: the first of a run of failures, then at
        most once a minute."""
        assert self.actor is not None
        self._ckpt_failures += 1
        now = time.monotonic()
        if self._ckpt_failures > 1 and now < self._ckpt_warned + 60.0:
            return
        self._ckpt_warned = now
        path = checkpoint_path(self.spec.name)
        full = isinstance(exc, StoreFull) or getattr(exc, "errno", None) == errno.ENOSPC
        why = f"no space left on {path}" if full else f"{type(exc).__name__}: {exc}"
        self.actor.log.warning(
            "checkpoint failed: %s (the previous checkpoint is kept; %d failed in a row)",
            why,
            self._ckpt_failures,
        )

    def restore(self) -> bool:
        """Give the actor its last checkpoint back; True if there was one."""
        if not self.checkpointing:
            return False
        assert self.actor is not None
        store = self._store()
        if self.aspec.name not in store:
            return False
        saved = store.get(self.aspec.name)
        self.actor.set_state(saved["state"])  # type: ignore[attr-defined]
        return True

    # ----- pool -------------------------------------------------------------------------------
    def pool(self) -> Any:
        """The actor's worker pool (started on first use)."""
        if self._pool is None and self.spec.settings.pool == "ray":
            from plexa.runtime.ray_pool import RayPool

            self._pool = RayPool(self.aspec.workers or None, safe_point=self.safe_point)
        elif self._pool is None:
            from plexa.runtime.pool import WorkerPool

            self._pool = WorkerPool(self.aspec.workers or None, safe_point=self.safe_point)
        return self._pool

    def close(self) -> None:
        """Stop the workers and close the checkpoint store."""
        if self._pool is not None:
            with contextlib.suppress(Exception):
                self._pool.close()
            self._pool = None
        if self._ckpt_store is not None:
            self._ckpt_store.close()
            self._ckpt_store = None


def apply_set(actor: Actor, key: str, value: Any) -> str:
    """Check ``value`` against the type of ``setup``'s ``key`` option and apply it; returns
    an empty string, or why it was refused."""
    params = type(actor).setup_signature().parameters
    if key not in params or key == "self":
        known = ", ".join(p for p in params if p != "self") or "none"
        return f"set: {key!r} is not an option of {type(actor).__name__}.setup (options: {known})"
    if value is not None or params[key].default is not None:
        problem = option_problem(type(actor).setup, key, value)
        if problem is not None:
            return f"set: {key} {problem}"
    actor.on_set(key, value)
    return ""


def call_command(actor: Actor, method: str, args: Any) -> tuple[bool, Any, str, str]:
    """Run ``@plexa.command`` method ``method``; returns (ok, value, error, traceback)."""
    if method not in type(actor).commands():
        known = ", ".join(sorted(type(actor).commands())) or "none"
        return False, None, f"invoke: {method!r} is not a @plexa.command (commands: {known})", ""
    positional = args if isinstance(args, list) else []
    keywords = args if isinstance(args, dict) else {}
    try:
        value = getattr(actor, method)(*positional, **keywords)
    except Exception as exc:
        return False, None, f"{type(exc).__name__}: {exc}", traceback.format_exc()
    wire, summary = to_wire(value)
    if wire is None and value is not None:
        return True, summary, "", ""
    return True, wire, "", ""


def _field(key: str, value: object) -> float | int | str:
    """A progress field as sent: a number as it is, anything else as its short text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = value if isinstance(value, str) else repr(value)
        return text if len(text) <= 200 else text[:199] + "…"
    return value
