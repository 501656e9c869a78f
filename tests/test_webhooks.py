"""Web-hooks against a real local receiver that verifies signatures, fails, stalls and
recovers, over a real run and a real ``plexa web``."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import wait_for
from plexa.core.hooks import WebhookSpec, hook_problems, verify_signature
from web_helpers import ENV, ROOT, Web, serve_web

pytestmark = [pytest.mark.allow_leftovers, pytest.mark.slow]
PIPE = """
actors:
  src:    {class: "actors:Source", options: {count: 1000000000, rate_hz: 500}}
  mid:    {class: "actors:Sink"}
  chatty: {class: "actors:Chatty", options: {every: 0.01}}
connections:
  src.out: [mid.inp]
"""
SECRET = "s3cret-for-tests"


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, written from docs/web.md (not with plexa's helper)."""
    stamp = headers["X-Plexa-Timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), headers["X-Plexa-Signature-256"])


@dataclass
class Receiver:
    """A local HTTP server: ``mode`` ok (200 if the signature checks, else 401), fail (500)
    or stall (no answer until ``release``); ``delay`` seconds before an ok answer."""

    mode: str = "ok"
    delay: float = 0.0
    got: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def bodies(self, ok: bool = True) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b, good in list(self.got) if good or not ok]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            mode = rec.mode
            if mode == "stall":
                rec.got.append((headers, body, False))
                rec.release.wait(60)
                return
            if mode == "fail":
                rec.got.append((headers, body, False))
                self.send_response(500)
            else:
                time.sleep(rec.delay)
                good = signed_by(SECRET, headers, body)
                rec.got.append((headers, body, good))
                self.send_response(200 if good else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    cfg = tmp_path_factory.mktemp("hooks") / "pipe.yaml"
    cfg.write_text(PIPE)
    with serve_web(cfg) as site:
        with site.client() as c:
            assert c.post(f"/runs/{site.name}/setup").status_code == 200
            assert c.post(f"/runs/{site.name}/run").status_code == 200
        yield site


def _add(c: httpx.Client, web: Web, **hook: Any) -> str:
    r = c.post(f"/runs/{web.name}/webhooks", json=hook)
    assert r.status_code == 201, r.text
    assert "secret" not in r.json()
    return str(r.json()["id"])


def _stats(c: httpx.Client, web: Web, hook_id: str) -> dict[str, Any]:
    (row,) = [h for h in c.get(f"/runs/{web.name}/webhooks").json() if h["id"] == hook_id]
    return dict(row)


def _toggle(c: httpx.Client, web: Web, actor: str = "mid") -> None:
    assert c.post(f"/runs/{web.name}/actors/{actor}/pause").status_code == 200
    assert c.post(f"/runs/{web.name}/actors/{actor}/resume").status_code == 200


def test_state_events_arrive_signed_and_the_receiver_verifies_them(
    web: Web, receiver: Receiver
) -> None:
    with web.client() as c:
        hook = _add(c, web, url=receiver.url, events=["state"], secret=SECRET)
        _toggle(c, web)
        wait_for(lambda: len(receiver.bodies()) >= 2, 20, "two state events delivered")
        assert c.delete(f"/runs/{web.name}/webhooks/{hook}").status_code == 200
    headers, body, good = receiver.got[0]
    assert good and verify_signature(SECRET, headers, body)
    assert not signed_by("another secret", headers, body)
    assert not verify_signature(SECRET, headers, body + b" ")
    states = [(b["kind"], b["data"]["actor"], b["data"]["state"]) for b in receiver.bodies()]
    assert states[:2] == [("state", "mid", "paused"), ("state", "mid", "running")]
    first = receiver.bodies()[0]
    assert first["run"] == web.name and first["seq"] > 0 and first["t"] > 0
    assert headers["X-Plexa-Event"] == "state"


def test_bad_hooks_are_refused_with_the_reason(web: Web) -> None:
    with web.client() as c:
        r = c.post(f"/runs/{web.name}/webhooks", json={"url": "ftp://x", "events": ["nope"]})
        assert r.status_code == 422
        text = json.dumps(r.json())
        assert "url" in text and "events" in text and "secret" in text
        assert c.post("/runs/nope/webhooks", json={"url": "http://x"}).status_code in (404, 422)
        assert c.delete(f"/runs/{web.name}/webhooks/nothere").status_code == 404
    with httpx.Client(base_url=web.url) as anon:
        assert anon.get(f"/runs/{web.name}/webhooks").status_code == 401
    assert hook_problems(WebhookSpec(url="http://h/x", secret="k")) == []


def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(
    web: Web, receiver: Receiver
) -> None:
    receiver.mode = "fail"
    with web.client() as c:
        hook = _add(c, web, url=receiver.url, events=["state"], secret=SECRET,
                    backoff_s=0.2, max_attempts=20)  # fmt: skip
        _toggle(c, web)
        wait_for(lambda: _stats(c, web, hook)["retries"] >= 3, 20, "three retries")
        assert "HTTP 500" in _stats(c, web, hook)["last_error"]
        receiver.mode = "ok"
        wait_for(lambda: _stats(c, web, hook)["delivered"] >= 2, 30, "delivery after recovery")
        stats = _stats(c, web, hook)
        c.delete(f"/runs/{web.name}/webhooks/{hook}")
    assert stats["failed"] == 0 and stats["dropped"] == 0
    deliveries = [h["X-Plexa-Delivery"] for h, _, _ in receiver.got]
    first = deliveries[0]
    assert deliveries.count(first) >= 4, "every retry of one event has the same delivery id"
    times = [float(h["X-Plexa-Timestamp"]) for h, _, _ in receiver.got]
    assert times == sorted(times)
    assert [b["data"]["state"] for b in receiver.bodies()][:2] == ["paused", "running"]


def _rate(c: httpx.Client, web: Web, seconds: float) -> float:
    first = c.get(f"/runs/{web.name}/status").json()["actors"]["mid"]["msgs_in"]
    t0 = time.monotonic()
    time.sleep(seconds)
    last = c.get(f"/runs/{web.name}/status").json()["actors"]["mid"]["msgs_in"]
    return (last - first) / (time.monotonic() - t0)


@pytest.mark.serial
def test_a_stalled_receiver_costs_drops_and_timeouts_but_not_throughput(
    web: Web, receiver: Receiver
) -> None:
    with web.client() as c:
        _rate(c, web, 1.0)
        baseline = _rate(c, web, 3.0)
        receiver.mode = "stall"
        hook = _add(c, web, url=receiver.url, events=["log"], secret=SECRET, queue=5,
                    timeout_s=1.0, max_attempts=2, backoff_s=0.1)  # fmt: skip
        wait_for(lambda: _stats(c, web, hook)["dropped"] > 20, 20, "drops while stalled")
        during = _rate(c, web, 3.0)
        wait_for(lambda: _stats(c, web, hook)["failed"] >= 1, 20, "an event given up")
        stats = _stats(c, web, hook)
        assert "timed out" in stats["last_error"]
        assert stats["queued"] <= 5
        receiver.mode = "ok"
        receiver.release.set()
        wait_for(lambda: _stats(c, web, hook)["delivered"] > 0, 20, "deliveries again")
        c.delete(f"/runs/{web.name}/webhooks/{hook}")
    assert during > 0.6 * baseline, (baseline, during)


def test_a_receiver_slower_than_nothing_but_within_the_timeout_is_not_a_failure(
    web: Web, receiver: Receiver
) -> None:
    receiver.delay = 0.6
    with web.client() as c:
        hook = _add(c, web, url=receiver.url, events=["state"], secret=SECRET, timeout_s=1.5)
        _toggle(c, web)
        wait_for(lambda: _stats(c, web, hook)["delivered"] >= 2, 20, "two slow deliveries")
        stats = _stats(c, web, hook)
        c.delete(f"/runs/{web.name}/webhooks/{hook}")
    assert stats["failed"] == 0 and stats["retries"] == 0, stats


def test_hooks_can_be_checked_without_a_server(tmp_path: Path) -> None:
    bad = WebhookSpec(url="http://h", events=("state",))
    assert hook_problems(bad) == ["secret: needed to sign deliveries (or say unsigned: true)"]
    assert hook_problems(WebhookSpec(url="http://h", unsigned=True)) == []


def test_a_pipeline_files_webhooks_get_the_runs_failure_from_plexa_run(
    receiver: Receiver, tmp_path: Path
) -> None:
    cfg = tmp_path / "fails.yaml"
    cfg.write_text(f"""
actors:
  bad: {{class: "actors:Fails", options: {{phase: run}}}}
webhooks:
  - url: {receiver.url}
    events: [failure, state]
    secret_env: HOOK_SECRET_FOR_TEST
""")
    env = {**ENV, "HOOK_SECRET_FOR_TEST": SECRET}
    r = subprocess.run([sys.executable, "-m", "plexa", "run", str(cfg), "--duration", "20"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr
    kinds = [b["kind"] for b in receiver.bodies()]
    assert "failure" in kinds, (kinds, r.stderr)
    (failure,) = [b["data"] for b in receiver.bodies() if b["kind"] == "failure"]
    assert failure["actor"] == "bad" and "boom in run" in failure["traceback"]
    assert all(good for _, _, good in receiver.got), "every delivery is signed"
    assert f"webhook {receiver.url}: delivered {len(receiver.got)}" in r.stderr


def test_webhooks_in_a_pipeline_file_are_checked(tmp_path: Path) -> None:
    from plexa.core.config import loads
    from plexa.errors import ConfigError

    head = 'actors:\n  a: {class: "actors:Idle"}\n'
    spec = loads(head + "webhooks:\n  - {url: 'http://h/x', events: failure, secret: k}\n")
    assert spec.webhooks == (WebhookSpec(url="http://h/x", events=("failure",), secret="k"),)
    with pytest.raises(ConfigError) as err:
        loads(head + "webhooks:\n  - {url: 'x', events: [fail], secert: k}\n"
              "  - {url: 'http://h', events: [state], secret_env: PLEXA_NOT_SET_ANYWHERE}\n")
    text = str(err.value)
    assert "webhooks[0].secert" in text and "secret" in text  # the suggestion
    assert "webhooks[1].secret_env" in text and "PLEXA_NOT_SET_ANYWHERE" in text
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.url"):
        loads(head + "webhooks:\n  - {url: 'x', events: [fail], secret: k}\n")


def test_job_events_reach_a_hook_that_asks_for_them(web: Web, receiver: Receiver) -> None:
    with web.client() as c:
        hook = _add(c, web, url=receiver.url, events=["job"], secret=SECRET)
        r = c.post(f"/runs/{web.name}/jobs", json={"module": "plexa.examples.job_http",
                                                    "name": "hooked"})  # fmt: skip
        assert r.status_code == 201, r.text
        wait_for(lambda: [b["data"]["state"] for b in receiver.bodies()
                          if b["data"]["name"] == "hooked"][:2] == ["starting", "running"],
                 20, "the job's starting and running events")  # fmt: skip
        c.delete(f"/runs/{web.name}/webhooks/{hook}")
    assert {b["kind"] for b in receiver.bodies()} == {"job"}


def test_a_pipeline_files_hooks_are_listed_by_plexa_web_with_their_counters(
    receiver: Receiver, tmp_path: Path
) -> None:
    cfg = tmp_path / "hooked.yaml"
    cfg.write_text(PIPE + f"webhooks:\n  - {{url: '{receiver.url}', events: [state], "
                   f"secret: {SECRET}}}\n")  # fmt: skip
    with serve_web(cfg) as site, site.client() as c:
        assert c.post(f"/runs/{site.name}/setup").status_code == 200

        def file_rows() -> list[dict[str, Any]]:
            rows = c.get(f"/runs/{site.name}/webhooks").json()
            return [r for r in rows if r["source"] == "file"]

        wait_for(lambda: file_rows() and file_rows()[0]["delivered"] >= 3, 20,
                 "the file hook's deliveries counted")  # fmt: skip
        (row,) = file_rows()
        assert row["url"] == receiver.url and row["events"] == ["state"]
        assert "secret" not in row
    assert len(receiver.bodies()) >= 3
