"""The HTTP API: a real ``plexa server`` run, a real ``plexa web`` process, real HTTP."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import assert_stays, settled, wait_for
from plexa.data.links import SAMPLE_MASK
from web_helpers import ENV, ROOT, Web, serve_web

PIPE = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  mid: {class: "actors:Sink"}
connections:
  src.out: [mid.inp]
"""
# One run and one web server serve the whole module; the fixture checks at its end that
# both left nothing behind (the per-test check would see the shared run).
pytestmark = pytest.mark.allow_leftovers


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    cfg = tmp_path_factory.mktemp("web") / "pipe.yaml"
    cfg.write_text(PIPE)
    with serve_web(cfg) as site:
        yield site


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/runs", None),
    ("GET", "/runs/{name}/status", None),
    ("GET", "/metrics", None),
    ("POST", "/runs/{name}/setup", None),
    ("POST", "/runs/{name}/actors/mid/pause", None),
    ("POST", "/runs/{name}/actors/mid/set", {"key": "delay", "value": 0.0}),
    ("POST", "/runs/{name}/actors/mid/invoke", {"method": "nothing", "args": []}),
    ("GET", "/runs/{name}/events", None),
    ("GET", "/runs/{name}/jobs", None),
    ("POST", "/runs/{name}/jobs", {"module": "plexa.examples.job_http"}),
    ("GET", "/runs/{name}/webhooks", None),
    ("POST", "/runs/{name}/webhooks", {"url": "http://127.0.0.1:9/", "secret": "k"}),
    ("DELETE", "/runs/{name}/webhooks/x", None),
    ("POST", "/runs/{name}/record", {"action": "stop"}),
    ("GET", "/runs/{name}/logs", None),
    ("GET", "/runs/{name}/report", None),
    ("GET", "/runs/{name}/snapshot", None),
    ("GET", "/", None),
]


def test_health_needs_no_token_and_every_other_route_refuses_a_missing_or_wrong_one(
    web: Web,
) -> None:
    with web.client(None) as anon:
        assert anon.get("/health").json() == {"status": "ok"}
        schema = anon.get("/openapi.json").json()
        assert schema["info"]["title"] == "plexa"
    # every route of the API is in ROUTES (a sample for each parametrised path)
    ops = {(m.upper(), re.sub(r"\{[^}]+\}", "*", p)) for p, o in schema["paths"].items() for m in o}
    tried = {(m, re.sub(r"/(mid|x|setup|pause)(?=/|$)", "/*", p.replace("{name}", "*")))
             for m, p, _ in ROUTES}  # fmt: skip
    assert ops - {("GET", "/health")} <= tried, ops - tried
    for token in (None, "wrong"):
        with web.client(token) as c:
            for method, path, body in ROUTES[:-1]:  # the page holds no run data
                r = c.request(method, path.format(name=web.name), json=body)
                assert r.status_code == 401, (method, path, token, r.text)
                assert r.headers["www-authenticate"] == "Bearer"


def test_the_token_file_is_private_and_holds_the_printed_token(web: Web) -> None:
    assert web.token_file.stat().st_mode & 0o777 == 0o600
    assert web.token_file.read_text() == web.token


def test_status_is_the_same_document_as_ctl_status_json(web: Web) -> None:
    with web.client() as c:
        assert c.get("/runs").json() == [web.name]
        status = c.get(f"/runs/{web.name}/status").json()
        assert c.get("/runs/nope/status").status_code == 404
    ctl = subprocess.run(
        [sys.executable, "-m", "plexa", "ctl", web.name, "status", "--json"],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    out = json.loads(ctl.stdout)
    doc = out["value"] if "ok" in out else out  # the reply, or the status object alone

    def shape(x: Any) -> Any:
        return {k: shape(v) for k, v in x.items()} if isinstance(x, dict) else type(x).__name__

    assert set(status) == set(doc) == {"run", "actors", "links"}
    assert status["run"]["name"] == doc["run"]["name"] == web.name
    assert {k: set(v) for k, v in status["actors"].items()} == {
        k: set(v) for k, v in doc["actors"].items()
    }
    assert shape(status["links"]).keys() == shape(doc["links"]).keys()


def test_logs_report_and_snapshot_are_the_documents_ctl_prints(web: Web) -> None:
    name = web.name
    with web.client() as c:
        report = c.get(f"/runs/{name}/report").json()
        assert {"src", "mid"} <= set(report["actors"])  # (and a recorder, once one is started)
        assert all(a["failures"] == [] for a in report["actors"].values())
        snapshot = c.get(f"/runs/{name}/snapshot").json()
        assert {"seq", "config", "status", "logs", "latest"} <= set(snapshot)
        assert {"src", "mid"} <= set(snapshot["config"]["actors"])
        logs = c.get(f"/runs/{name}/logs", params={"lines": 5}).json()
        assert isinstance(logs, list) and len(logs) <= 5
        assert c.get(f"/runs/{name}/logs", params={"lines": 0}).status_code == 422


def test_commands_drive_the_run_and_pause_stops_the_frames(web: Web) -> None:
    name = web.name
    with web.client() as c:

        def received() -> int:
            return int(c.get(f"/runs/{name}/status").json()["actors"]["mid"]["msgs_in"])

        r = c.post(f"/runs/{name}/setup")
        assert r.status_code == 200, r.text
        assert set(r.json()["actors"].values()) == {"ready"}
        refused = c.post(f"/runs/{name}/pause")
        assert refused.status_code == 409
        assert "not allowed" in refused.json()["detail"]["error"]
        assert c.post(f"/runs/{name}/fly").status_code == 422
        assert c.post(f"/runs/{name}/run").status_code == 200
        start = received()
        wait_for(lambda: received() > start + 20, 20, "frames to flow")
        assert c.post(f"/runs/{name}/pause").status_code == 200
        paused = settled(received)
        assert_stays(lambda: received() == paused, 0.5, "no frame while paused")
        assert c.post(f"/runs/{name}/resume").status_code == 200
        wait_for(lambda: received() > paused + 20, 20, "frames to flow again")
        r = c.post(f"/runs/{name}/actors/mid/set", json={"key": "delay", "value": 0.0})
        assert r.status_code == 200, r.text
        r = c.post(f"/runs/{name}/actors/mid/set", json={"key": "nope", "value": 1})
        assert r.status_code == 409
        r = c.post(f"/runs/{name}/actors/mid/invoke", json={"method": "nope"})
        assert r.status_code == 409
        assert c.post(f"/runs/{name}/actors/mid/pause").status_code == 200
        assert c.get(f"/runs/{name}/status").json()["actors"]["mid"]["state"] == "paused"
        assert c.post(f"/runs/{name}/actors/mid/resume").status_code == 200
        assert c.post(f"/runs/{name}/actors/mid/fly").status_code == 422


def test_events_start_with_the_snapshot_then_stream_live_events(web: Web) -> None:
    with web.client() as c, c.stream("GET", f"/runs/{web.name}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.iter_lines())
        kind, seq, snapshot = next(events)
        assert kind == "snapshot"
        assert {"seq", "config", "status", "logs", "latest"} <= set(snapshot)
        state = snapshot["status"]["actors"]["src"]["state"]
        command = {"created": "setup", "paused": "resume"}.get(state, "pause")
        path = "setup" if command == "setup" else f"actors/src/{command}"
        assert c.post(f"/runs/{web.name}/{path}").status_code == 200
        seen: list[str] = []
        for kind, ev_seq, data in events:
            assert ev_seq is not None and ev_seq > seq, "live events are newer than the snapshot"
            seen.append(kind)
            if kind == "state" and data["actor"] == "src":
                break
            assert len(seen) < 200, f"no state event for src in {seen}"


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, int | None, Any]]:
    kind, seq, data = "", None, ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and kind:
            yield kind, seq, json.loads(data)
            kind, seq, data = "", None, ""


def test_metrics_parse_as_prometheus_text_with_actor_and_link_counters(web: Web) -> None:
    with web.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert {"plexa_actor_messages_in", "plexa_link_sent", "plexa_actor_state"} <= set(families)
    actors = {s.labels["actor"] for s in families["plexa_actor_messages_in"].samples}
    assert actors == {"src", "mid"}
    links = {s.labels["link"] for s in families["plexa_link_sent"].samples}
    assert links == {"src.out->mid.inp"}
    assert all(s.labels["run"] == web.name for s in families["plexa_link_sent"].samples)
    memory = families["plexa_actor_resident_memory_bytes"].samples
    rss = {s.labels["actor"]: s.value for s in memory}
    assert set(rss) == {"src", "mid"} and min(rss.values()) > 1e6


def _flowing(c: Any, name: str) -> None:
    """Get the module's shared run flowing, whatever the tests before left it in: the run is
    held at start, and other tests pause the run or single actors."""
    status = c.get(f"/runs/{name}/status").json()
    commands = {"created": ["setup", "run"], "ready": ["run"], "paused": ["resume"]}
    for command in commands.get(status["run"]["state"], []):
        assert c.post(f"/runs/{name}/{command}").status_code == 200
    for actor, a in status["actors"].items():
        if a["state"] == "paused":
            assert c.post(f"/runs/{name}/actors/{actor}/resume").status_code == 200


def test_metrics_have_a_latency_histogram_per_link_that_counts_what_was_received(
    web: Web,
) -> None:
    def scrape() -> dict[str, Any]:
        with web.client() as c:
            return {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}

    with web.client() as c:
        _flowing(c, web.name)
    families: dict[str, Any] = {}

    def flowing() -> bool:
        families.update(scrape())
        return families["plexa_link_received"].samples[0].value > 0

    wait_for(flowing, 20, "messages received on the link")
    samples = families["plexa_link_latency_seconds"].samples
    hist = {s.name: s.value for s in samples if "le" not in s.labels}
    bounds = [(float(s.labels["le"]), s.value) for s in samples if "le" in s.labels]
    assert len(bounds) == 32 and bounds[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(bounds)), "cumulative"
    assert bounds[-1][1] == hist["plexa_link_latency_seconds_count"]
    received = families["plexa_link_received"].samples[0].value
    # a local link times one message in SAMPLE_MASK + 1 (sequence numbers 0, 8, ...); the
    # status reads a link's counters while its consumer may be between two of them
    timed = -(-received // (SAMPLE_MASK + 1))
    assert abs(bounds[-1][1] - timed) <= 2, (bounds[-1][1], received)
    mean = hist["plexa_link_latency_seconds_sum"] / bounds[-1][1]
    assert 1e-6 < mean < 1.0, mean


def test_a_non_loopback_bind_without_tls_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "plexa", "web", "any", "--bind", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert "without TLS" in r.stderr


def test_recording_is_started_and_stopped_over_http(web: Web, tmp_path: Path) -> None:
    import plexa.recording

    path = tmp_path / "web.mcap"
    with web.client() as c:
        _flowing(c, web.name)
        body = {"action": "start", "links": ["src.out"], "path": str(path)}
        r = c.post(f"/runs/{web.name}/record", json=body)
        assert r.status_code == 200, r.text

        def written() -> float:
            actor = c.get(f"/runs/{web.name}/status").json()["actors"].get("recorder", {})
            return float((actor.get("progress") or {}).get("done", 0))

        wait_for(lambda: written() >= 10, 30, "the recorder writing src.out")
        assert c.post(f"/runs/{web.name}/record", json={"action": "stop"}).status_code == 200
        bad = c.post(f"/runs/{web.name}/record", json={"action": "pause"})
        assert bad.status_code == 422
    with plexa.recording.open(path) as rec:
        seqs = [m.sequence for m in rec]
        assert rec.complete and len(seqs) >= 10
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_jobs_are_launched_and_listed_over_http(web: Web) -> None:
    with web.client() as c:
        r = c.post(f"/runs/{web.name}/jobs", json={"module": "plexa.examples.job_http",
                                                    "name": "site", "config": {"k": 1}})
        assert r.status_code == 201, r.text
        row = r.json()
        assert row["name"] == "site" and row["port"] > 0 and len(row["guid"]) == 16
        wait_for(lambda: {j["name"]: j for j in c.get(f"/runs/{web.name}/jobs").json()}
                 ["site"]["state"] == "running", 20, "the job running")  # fmt: skip
        bad = c.post(f"/runs/{web.name}/jobs", json={"module": "1nope"})
        assert bad.status_code == 409 and "not a module name" in bad.json()["detail"]["error"]


def test_metrics_carry_progress_cpu_and_memory_when_the_status_has_them() -> None:
    from plexa.edges.web import metrics_text

    status = {"actors": {"fit": {"state": "running", "restarts": 1, "cpu_percent": 12.5,
                                 "rss_bytes": 2048, "progress": {"done": 3, "total": 10}}},
              "links": {}}  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(metrics_text({"r": status}))}
    value = {name: f.samples[0].value for name, f in families.items() if f.samples}
    assert value["plexa_actor_progress_done"] == 3 and value["plexa_actor_progress_total"] == 10
    assert value["plexa_actor_cpu_percent"] == 12.5
    assert value["plexa_actor_resident_memory_bytes"] == 2048
