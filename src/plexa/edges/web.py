"""The HTTP API of a running pipeline: a FastAPI app over :class:`plexa.edges.client.Client`.

The server is its own process (``plexa web NAME``): it talks to the nexus over the same
control protocol as ``plexa ctl``, so a slow or stalled web client never touches the nexus's
loop. Every route except ``/health`` needs the bearer token that ``plexa web`` makes. See
``docs/web.md``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.responses import Response

from plexa.core.hooks import WebhookSpec, hook_problems
from plexa.core.paths import RunPaths
from plexa.edges.client import Client, connect, find_run
from plexa.edges.webhooks import Dispatcher, file_hooks
from plexa.errors import PlexaError, RemoteError, Timeout

__all__ = ["InvokeBody", "JobBody", "SetBody", "WebhookBody", "create_app", "metrics_text"]

RunCommand = Literal["setup", "run", "pause", "resume", "stop", "abort"]
ActorCommand = Literal["setup", "run", "pause", "resume", "stop", "abort", "kill", "revive"]
STATIC = Path(__file__).parent / "static"
"""The dashboard's files (hand-written, no third-party code; served without the token: they
hold no run data)."""
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SetBody(BaseModel):
    """``POST .../actors/{actor}/set``: change option ``key`` to ``value``."""

    key: str
    value: Any = None


class RecordBody(BaseModel):
    """``POST .../record``: start recording ``links`` (output ports; none: every one) to
    ``path`` (none: the run's own), or stop (docs/recording.md)."""

    action: Literal["start", "stop"]
    links: list[str] = []
    path: str | None = None
    timeout_s: float = 30.0


class InvokeBody(BaseModel):
    """``POST .../actors/{actor}/invoke``: call ``@plexa.command`` ``method`` with ``args``."""

    method: str
    args: list[Any] | dict[str, Any] = []
    timeout_s: float = 30.0


_Credentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
]


class WebhookBody(BaseModel):
    """``POST /runs/{name}/webhooks``: a hook, with the fields of ``webhooks:`` entries."""

    url: str
    events: list[str] = ["failure", "restart"]
    secret: str = ""
    unsigned: bool = False
    queue: int = 1000
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 0.5


class JobBody(BaseModel):
    """``POST /runs/{name}/jobs``: start ``python -m module`` with ``config`` on its stdin."""

    module: str
    name: str = ""
    config: Any = None
    args: list[str] = []
    restart: Literal["never", "on-failure", "always"] = "never"
    config_timeout: float = 3.0


class _Runs:
    """One control connection per run, shared by the request threads under a lock (a zmq
    socket is used by one thread at a time)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._clients: dict[str, Client] = {}
        self._hooks: dict[str, Dispatcher] = {}
        self._lock = threading.Lock()

    def request(self, name: str, command: str, actor: str | None = None, /, **args: Any) -> Any:
        if name not in self.names:
            raise HTTPException(404, f"no run {name!r} is served here (served: {self.names})")
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = _connect(name)
            try:
                return client.request(command, actor, **args)
            except RemoteError as exc:
                raise HTTPException(409, {"error": str(exc), "traceback": exc.traceback}) from None
            except Timeout as exc:
                client.close()  # a late answer must not be read as the next request's
                del self._clients[name]
                raise HTTPException(504, str(exc)) from None

    def run_dir(self, name: str) -> Path:
        try:
            return RunPaths.for_run(find_run(name).run_id).run_dir
        except PlexaError as exc:
            raise HTTPException(503, str(exc)) from None

    def hooks(self, name: str) -> Dispatcher:
        if name not in self.names:
            raise HTTPException(404, f"no run {name!r} is served here (served: {self.names})")
        with self._lock:
            if name not in self._hooks:
                self._hooks[name] = Dispatcher(name)
            return self._hooks[name]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            for hooks in self._hooks.values():
                hooks.close()
            self._hooks.clear()


def _connect(name: str) -> Client:
    try:
        return connect(name)
    except PlexaError as exc:
        raise HTTPException(503, str(exc)) from None


def create_app(names: list[str], token: str) -> FastAPI:
    """The API serving runs ``names``; every route but ``/health`` needs ``token``."""
    runs = _Runs(names)

    def authorized(creds: _Credentials) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials, token):
            raise HTTPException(401, "a valid bearer token is needed",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    app = FastAPI(title="plexa", description="Control and observe running plexa pipelines.")
    app.router.add_event_handler("shutdown", runs.close)
    auth = [Depends(authorized)]

    @app.middleware("http")
    async def page_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(_PAGE_HEADERS)
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard page (docs/web.md); it asks for the token itself."""
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness of the web server (no token needed)."""
        return {"status": "ok"}

    @app.get("/runs", dependencies=auth)
    def list_served() -> list[str]:
        """The runs this server serves."""
        return list(names)

    @app.get("/runs/{name}/status", dependencies=auth)
    def status(name: str) -> JSONResponse:
        """The status object (as ``plexa ctl NAME status --json``'s value, docs/status.md)."""
        return JSONResponse(runs.request(name, "status"))

    @app.get("/runs/{name}/logs", dependencies=auth)
    def logs(name: str, lines: Annotated[int, Query(ge=1, le=10_000)] = 100) -> JSONResponse:
        """The last ``lines`` records of the merged log (as ``plexa ctl NAME logs``)."""
        return JSONResponse(runs.request(name, "logs", lines=lines))

    @app.get("/runs/{name}/report", dependencies=auth)
    def report(name: str) -> JSONResponse:
        """Per actor: state, restarts and every failure with its traceback (docs/status.md)."""
        return JSONResponse(runs.request(name, "report"))

    @app.get("/runs/{name}/snapshot", dependencies=auth)
    def snapshot(name: str) -> JSONResponse:
        """What a late client needs at once: ``{seq, config, status, logs, latest}``."""
        return JSONResponse(runs.request(name, "snapshot"))

    @app.post("/runs/{name}/webhooks", dependencies=auth, status_code=201)
    def add_webhook(name: str, body: WebhookBody) -> dict[str, Any]:
        """Deliver this run's events of ``events`` kinds to ``url`` from now on (from this
        server's process, as long as it runs): ``{id, ...counters}``."""
        spec = msgspec.convert(body.model_dump(), WebhookSpec)
        problems = hook_problems(spec)
        if problems:
            raise HTTPException(422, problems)
        hooks = runs.hooks(name)
        try:
            hook_id = hooks.add(spec)
        except KeyError as exc:
            raise HTTPException(422, [str(exc.args[0])]) from None
        hooks.wait_subscribed(5.0)
        return _stats(hooks, hook_id)

    @app.get("/runs/{name}/webhooks", dependencies=auth)
    def list_webhooks(name: str) -> list[dict[str, Any]]:
        """The hooks added here (``source: api``) and the pipeline file's (``source: file``,
        delivered by the run's process), with their counters (delivered, retries, failed,
        dropped, queued, last_error); secrets are not shown."""
        hooks = runs.hooks(name).statistics() + file_hooks(runs.run_dir(name))
        return [msgspec.to_builtins(s) for s in hooks]

    @app.delete("/runs/{name}/webhooks/{hook_id}", dependencies=auth)
    def remove_webhook(name: str, hook_id: str) -> dict[str, str]:
        """Stop delivering to a hook."""
        if not runs.hooks(name).remove(hook_id):
            raise HTTPException(404, f"no webhook {hook_id!r}")
        return {"removed": hook_id}

    @app.post("/runs/{name}/jobs", dependencies=auth, status_code=201)
    def launch_job(name: str, body: JobBody) -> JSONResponse:
        """Start a worker job (docs/jobs.md): its row (guid, port, module, state, pid...)."""
        return JSONResponse(runs.request(name, "launch", **body.model_dump()), 201)

    @app.get("/runs/{name}/jobs", dependencies=auth)
    def list_jobs(name: str) -> JSONResponse:
        """The run's worker jobs: guid, name, port, module, state, pid, restarts, session."""
        return JSONResponse(runs.request(name, "jobs"))

    @app.post("/runs/{name}/actors/{actor}/set", dependencies=auth)
    def set_option(name: str, actor: str, body: SetBody) -> JSONResponse:
        """Change a ``setup`` option of ``actor`` (applied at its next safe point)."""
        return JSONResponse(runs.request(name, "set", actor, key=body.key, value=body.value))

    @app.post("/runs/{name}/actors/{actor}/invoke", dependencies=auth)
    def invoke(name: str, actor: str, body: InvokeBody) -> JSONResponse:
        """Call a ``@plexa.command`` method of ``actor``; its return value."""
        value = runs.request(
            name, "invoke", actor, method=body.method, args=body.args, timeout_s=body.timeout_s
        )
        return JSONResponse(value)

    @app.post("/runs/{name}/actors/{actor}/{command}", dependencies=auth)
    def actor_command(name: str, actor: str, command: ActorCommand) -> JSONResponse:
        """A lifecycle command for one actor: setup, run, pause, resume, stop, abort, kill or
        revive."""
        return JSONResponse(runs.request(name, command, actor))

    @app.post("/runs/{name}/record", dependencies=auth)
    def record(name: str, body: RecordBody) -> JSONResponse:
        """Start or stop recording to MCAP, as ``plexa ctl NAME record``: the recorder's
        counters. A relative ``path`` is taken from the folder the run was started in."""
        return JSONResponse(runs.request(name, "record", **body.model_dump()))

    @app.post("/runs/{name}/{command}", dependencies=auth)
    def run_command(name: str, command: RunCommand) -> JSONResponse:
        """A lifecycle command for the whole run: ``{run, actors: {name: state}}``."""
        return JSONResponse(runs.request(name, command))

    @app.get("/runs/{name}/events", dependencies=auth)
    def events(name: str, request: Request) -> StreamingResponse:
        """Server-sent events: the snapshot first (``event: snapshot``), then every event
        (``event: KIND``, ``id: SEQ``) as the run publishes it."""
        if name not in names:
            raise HTTPException(404, f"no run {name!r} is served here")
        client = _connect(name)
        try:
            snapshot = client.subscribe()
        except PlexaError as exc:
            client.close()
            raise HTTPException(503, str(exc)) from None
        return StreamingResponse(
            _sse(client, snapshot, request), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )  # fmt: skip

    @app.get("/metrics", dependencies=auth, response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Per actor and per link counters of every served run, in the Prometheus format."""
        text = metrics_text({n: runs.request(n, "status") for n in names})
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _stats(hooks: Dispatcher, hook_id: str) -> dict[str, Any]:
    (stats,) = [s for s in hooks.statistics() if s.id == hook_id]
    return dict(msgspec.to_builtins(stats))


def _frame(kind: str, data: Any, seq: int | None = None) -> bytes:
    head = f"event: {kind}\n" + (f"id: {seq}\n" if seq is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


async def _sse(client: Client, snapshot: dict[str, Any], request: Request) -> AsyncIterator[bytes]:
    """The snapshot, then events with a newer ``seq``; the client is closed when the HTTP
    client leaves. A reader slower than the run loses events at the zmq high-water mark
    (seen as a gap in ``id``); the run never waits for it."""
    seq = int(snapshot.get("seq", 0))
    yield _frame("snapshot", snapshot, seq)
    stream: Iterator[Any] = client.events(timeout=0.5)
    try:
        while not await request.is_disconnected():
            event = await asyncio.to_thread(next, stream, None)
            if event is None:
                stream = client.events(timeout=0.5)
                yield b": keep-alive\n\n"
                continue
            if event.seq > seq:
                yield _frame(event.kind, event.data, event.seq)
    finally:
        client.close()


class _StatusCollector(Collector):
    def __init__(self, statuses: dict[str, dict[str, Any]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Metric]:
        actor_labels = ["run", "actor"]
        link_labels = ["run", "link", "policy"]
        up = GaugeMetricFamily("plexa_actor_state", "1 for the actor's current state",
                               labels=[*actor_labels, "state"])  # fmt: skip
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        latency = HistogramMetricFamily(
            "plexa_link_latency_seconds", "Put-to-handler latency of the messages taken",
            labels=link_labels)  # fmt: skip

        def family(
            name: str, doc: str, counter: bool, labels: list[str]
        ) -> GaugeMetricFamily | CounterMetricFamily:
            if name not in families:
                kind = CounterMetricFamily if counter else GaugeMetricFamily
                families[name] = kind(name, doc, labels=labels)
            return families[name]

        for run, status in self.statuses.items():
            for actor, a in status.get("actors", {}).items():
                up.add_metric([run, actor, str(a.get("state", ""))], 1.0)
                for key, name, doc, counter, scale in _ACTOR_FIELDS:
                    if a.get(key) is not None:
                        family(name, doc, counter, actor_labels).add_metric(
                            [run, actor], float(a[key]) * scale
                        )
                progress = a.get("progress") or {}
                for key, name, doc in _PROGRESS_FIELDS:
                    if isinstance(progress.get(key), int | float):
                        family(name, doc, False, actor_labels).add_metric(
                            [run, actor], float(progress[key])
                        )
            for link, s in status.get("links", {}).items():
                labels = [run, link, str(s.get("policy", ""))]
                for key, name, doc, counter, scale in _LINK_FIELDS:
                    if s.get(key) is not None:
                        family(name, doc, counter, link_labels).add_metric(
                            labels, float(s[key]) * scale
                        )
                latency.add_metric(labels, _buckets(s.get("latency_buckets") or []),
                                   float(s.get("latency_sum_s") or 0.0))  # fmt: skip
        yield up
        yield from families.values()
        yield latency


_ACTOR_FIELDS = [
    ("restarts", "plexa_actor_restarts", "Restarts of the actor", True, 1.0),
    ("msgs_in", "plexa_actor_messages_in", "Messages taken from the actor's inputs", True, 1.0),
    ("msgs_out", "plexa_actor_messages_out", "Messages put on the actor's outputs", True, 1.0),
    ("rate_in", "plexa_actor_rate_in", "Messages in per second", False, 1.0),
    ("rate_out", "plexa_actor_rate_out", "Messages out per second", False, 1.0),
    ("handler_p50_us", "plexa_actor_handler_p50_seconds", "Median handler time", False, 1e-6),
    ("handler_p99_us", "plexa_actor_handler_p99_seconds", "p99 handler time", False, 1e-6),
    ("cpu_percent", "plexa_actor_cpu_percent", "CPU over the last window, % of a core", False, 1.0),
    ("rss_bytes", "plexa_actor_resident_memory_bytes", "Resident memory", False, 1.0),
]
_PROGRESS_FIELDS = [
    ("done", "plexa_actor_progress_done", "Work done, as last reported"),
    ("total", "plexa_actor_progress_total", "Work to do, as last reported"),
]
_LINK_FIELDS = [
    ("sent", "plexa_link_sent", "Messages put on the link", True, 1.0),
    ("received", "plexa_link_received", "Messages handed to the consumer", True, 1.0),
    ("dropped", "plexa_link_dropped", "Messages dropped by the link's policy", True, 1.0),
    ("lost", "plexa_link_lost", "Messages lost on a lossless link", True, 1.0),
    ("depth", "plexa_link_depth", "Messages waiting in the link", False, 1.0),
    ("bytes_per_s", "plexa_link_bytes_per_second", "Payload bytes per second", False, 1.0),
    ("latency_p50_us", "plexa_link_latency_p50_seconds", "Median link latency", False, 1e-6),
    ("latency_p99_us", "plexa_link_latency_p99_seconds", "p99 link latency", False, 1e-6),
]


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets of a status histogram (``LinkStatus.latency_buckets``:
    entry k counts latencies below 1.024 * 2**k µs; the last one has no upper bound). The
    same bounds every time, up to ``+Inf``."""
    out: list[tuple[str, float]] = []
    total = 0
    for k, n in enumerate(counts[:-1]):
        total += n
        out.append((f"{1.024e-6 * 2**k:.6g}", float(total)))
    out.append(("+Inf", float(sum(counts))))
    return out


def metrics_text(statuses: dict[str, dict[str, Any]]) -> str:
    """The Prometheus text exposition of status objects, by run name."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(statuses))
    return generate_latest(registry).decode()
