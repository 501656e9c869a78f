"""Web-hook delivery: a run's events POSTed as signed JSON to the hooks' URLs.

A :class:`Dispatcher` reads the run's events with a client connection of its own (like
``plexa ctl``) in a thread, and hands each event to the hooks that want its kind. Every hook
has a bounded queue (the oldest event is dropped when it is full, and counted) and a thread
that delivers one event at a time, in order, retrying with a doubling backoff. The run
never waits for any of it: a slow reader of the events endpoint only loses events at its
high-water mark. See ``docs/web.md``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from plexa.core.hooks import HOOK_KINDS, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSpec, sign
from plexa.core.paths import write_private
from plexa.edges.client import Client, connect

__all__ = ["MAX_BACKOFF_S", "WEBHOOKS_FILE", "Dispatcher", "HookStatistics", "file_hooks"]

MAX_BACKOFF_S = 30.0
WEBHOOKS_FILE = "webhooks.json"
"""In the run directory: the counters of the pipeline file's hooks (see ``stats_file``)."""
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another attempt (besides no answer at all); any other non-2xx gives up."""


class HookStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One hook's counters (``GET /runs/{name}/webhooks``, ``Dispatcher.statistics()``)."""

    id: str
    """The hook's id (``DELETE /runs/{name}/webhooks/{id}``)."""
    url: str
    events: tuple[str, ...]
    delivered: int
    """Events the receiver accepted (2xx)."""
    retries: int
    """Attempts after a failed one."""
    failed: int
    """Events given up after ``max_attempts`` or refused with a 4xx."""
    dropped: int
    """Events dropped because the queue was full."""
    queued: int
    """Events waiting now."""
    last_error: str
    """Why the last failed attempt failed ("" if none did)."""
    source: str = "api"
    """``api`` (added with ``POST .../webhooks``) or ``file`` (the pipeline's ``webhooks:``)."""


class _Hook:
    def __init__(self, hook_id: str, spec: WebhookSpec, run: str) -> None:
        self.id, self.spec, self.run = hook_id, spec, run
        self.kinds = {HOOK_KINDS[k] for k in spec.events}
        self.queue: deque[tuple[str, bytes]] = deque()
        self.cond = threading.Condition()
        self.closed = threading.Event()
        self.delivered = self.retries = self.failed = self.dropped = 0
        self.last_error = ""
        self.busy = False
        self.thread = threading.Thread(target=self._deliver, name=f"webhook {hook_id}",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def idle(self) -> bool:
        with self.cond:
            return not self.queue and not self.busy

    def offer(self, kind: str, body: bytes) -> None:
        with self.cond:
            if len(self.queue) >= self.spec.queue:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append((kind, body))
            self.cond.notify()

    def close(self) -> None:
        self.closed.set()
        with self.cond:
            self.cond.notify()

    def statistics(self) -> HookStatistics:
        with self.cond:
            return HookStatistics(
                id=self.id, url=self.spec.url, events=self.spec.events,
                delivered=self.delivered, retries=self.retries, failed=self.failed,
                dropped=self.dropped, queued=len(self.queue), last_error=self.last_error,
            )  # fmt: skip

    def _deliver(self) -> None:
        while not self.closed.is_set():
            with self.cond:
                while not self.queue and not self.closed.is_set():
                    self.cond.wait()
                if self.closed.is_set():
                    return
                kind, body = self.queue.popleft()
                self.busy = True
            try:
                self._attempts(kind, body, secrets.token_hex(8))
            finally:
                with self.cond:
                    self.busy = False

    def _attempts(self, kind: str, body: bytes, delivery: str) -> None:
        backoff = self.spec.backoff_s
        for attempt in range(1, self.spec.max_attempts + 1):
            error, retry = self._post(kind, body, delivery)
            with self.cond:
                if error is None:
                    self.delivered += 1
                    return
                self.last_error = error
                if not retry or attempt == self.spec.max_attempts:
                    self.failed += 1
                    return
                self.retries += 1
            if self.closed.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _post(self, kind: str, body: bytes, delivery: str) -> tuple[str | None, bool]:
        """One attempt: (None, _) if accepted, else (why, worth retrying)."""
        parts = urlsplit(self.spec.url)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "plexa-webhooks",
            "X-Plexa-Event": kind,
            "X-Plexa-Delivery": delivery,
            TIMESTAMP_HEADER: stamp,
        }
        if self.spec.secret:
            headers[SIGNATURE_HEADER] = sign(self.spec.secret, stamp, body)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                               timeout=self.spec.timeout_s,
                                               context=ssl.create_default_context())  # fmt: skip
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                              timeout=self.spec.timeout_s)  # fmt: skip
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}", True
        finally:
            conn.close()
        if 200 <= response.status < 300:
            return None, False
        return f"HTTP {response.status} {response.reason}", response.status in RETRY_STATUS


class Dispatcher:
    """Delivers run ``run``'s events to web-hooks, from threads of this process.

    ``connect_to(run)`` makes the client connection (default :func:`plexa.connect`).
    """

    def __init__(
        self,
        run: str,
        connect_to: Callable[[str], Client] = connect,
        *,
        source: str = "api",
        stats_file: Path | None = None,
    ) -> None:
        self.run = run
        self.source = source
        self.stats_file = stats_file
        """Where the counters are written about once a second (JSON, mode 0600), for
        ``plexa web`` to show hooks it does not deliver itself."""
        self._connect = connect_to
        self._hooks: dict[str, _Hook] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._subscribed = threading.Event()
        self._quiet = threading.Event()
        """Set when a read found no event pending."""
        self.error = ""
        """Why the events could not be read, if they could not."""
        self._thread = threading.Thread(target=self._read, name=f"webhooks {run}", daemon=True)
        self._thread.start()

    @classmethod
    def for_hooks(
        cls, run: str, hooks: tuple[WebhookSpec, ...], stats_file: Path | None = None
    ) -> Dispatcher:
        """A dispatcher delivering to ``hooks`` (a pipeline's ``webhooks:``)."""
        dispatcher = cls(run, source="file", stats_file=stats_file)
        for hook in hooks:
            dispatcher.add(hook)
        return dispatcher

    def add(self, spec: WebhookSpec) -> str:
        """Start delivering to ``spec`` (checked by the caller); its id. A ``secret_env``
        is read now; unset, it raises :class:`KeyError` naming the variable."""
        if spec.secret_env:
            if spec.secret_env not in os.environ:
                raise KeyError(f"the environment variable {spec.secret_env} is not set")
            spec = msgspec.structs.replace(spec, secret=os.environ[spec.secret_env])
        hook_id = secrets.token_hex(4)
        with self._lock:
            self._hooks[hook_id] = _Hook(hook_id, spec, self.run)
        return hook_id

    def remove(self, hook_id: str) -> bool:
        """Stop delivering to hook ``hook_id`` (what is queued is dropped); False if unknown."""
        with self._lock:
            hook = self._hooks.pop(hook_id, None)
        if hook is not None:
            hook.close()
        return hook is not None

    def statistics(self) -> list[HookStatistics]:
        """Every hook's counters."""
        with self._lock:
            hooks = list(self._hooks.values())
        return [msgspec.structs.replace(h.statistics(), source=self.source) for h in hooks]

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """Wait until events are being read (deliveries start with events after this)."""
        return self._subscribed.wait(timeout)

    def summary(self) -> list[str]:
        """One line per hook: its URL and counters (what ``plexa run`` prints at the end)."""
        return [
            f"webhook {s.url}: delivered {s.delivered}, retries {s.retries}, failed {s.failed}, "
            f"dropped {s.dropped}" + (f" (last error: {s.last_error})" if s.last_error else "")
            for s in self.statistics()
        ]

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the events published so far to be delivered (or
        given up); True if every queue emptied."""
        deadline = time.monotonic() + timeout
        self._quiet.clear()
        while time.monotonic() < deadline:
            if self._quiet.is_set() or not self._thread.is_alive():
                with self._lock:
                    hooks = list(self._hooks.values())
                if all(h.idle() for h in hooks):
                    return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading and delivering; what is still queued is not sent."""
        self._closed.set()
        with self._lock:
            hooks = list(self._hooks.values())
        for hook in hooks:
            hook.close()
        self._thread.join(timeout)
        for hook in hooks:
            hook.thread.join(timeout)

    def _read(self) -> None:
        client: Client | None = None
        try:
            while client is None and not self._closed.is_set():
                try:
                    client = self._connect(self.run)
                    snapshot = client.subscribe(tuple(sorted(set(HOOK_KINDS.values()))))
                except Exception as exc:  # the run is not up yet: try again
                    self.error = f"{type(exc).__name__}: {exc}"
                    if client is not None:
                        client.close()
                        client = None
                    self._closed.wait(0.5)
            if client is None:
                return
            self.error = ""
            self._subscribed.set()
            seen = int(snapshot.get("seq", 0))
            written = 0.0
            while not self._closed.is_set():
                if self.stats_file is not None and time.monotonic() - written >= 1.0:
                    written = time.monotonic()
                    self._write_stats(self.stats_file)
                for event in client.events(timeout=0.05):
                    if event.seq > seen:
                        seen = event.seq
                        self._offer(event.kind, event.seq, event.t, event.data)
                    if self._closed.is_set():
                        break
                self._quiet.set()
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()

    def _write_stats(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # the run directory is gone: the run has ended
            write_private(path, msgspec.json.encode(self.statistics()))

    def _offer(self, kind: str, seq: int, t: float, data: Any) -> None:
        with self._lock:
            hooks = [h for h in self._hooks.values() if kind in h.kinds]
        if not hooks:
            return
        body = json.dumps({"run": self.run, "kind": kind, "seq": seq, "t": t, "data": data},
                          separators=(",", ":")).encode()  # fmt: skip
        for hook in hooks:
            hook.offer(kind, body)


def file_hooks(run_dir: Path) -> list[HookStatistics]:
    """The counters of the pipeline file's hooks, as the run last wrote them ([] if none)."""
    try:
        data = (run_dir / WEBHOOKS_FILE).read_bytes()
        return msgspec.json.decode(data, type=list[HookStatistics])
    except (OSError, msgspec.DecodeError):
        return []
