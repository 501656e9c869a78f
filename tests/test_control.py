"""The control plane with a real ``plexa server`` process and real sockets."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from conftest import plexa_server, wait_for
from plexa.core import protocol as proto
from plexa.edges.client import Client, connect
from plexa.errors import RemoteError

ROOT = Path(__file__).resolve().parent.parent
PIPE = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  mid: {class: "actors:Sink"}
  talk: {class: "actors:Chatty"}
connections:
  src.out: [mid.inp]
"""


class Served:
    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc = proc
        self.name = name

    def client(self) -> Client:
        return connect(self.name)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(getattr(request, "param", PIPE))
    with plexa_server(cfg) as run:
        yield Served(run.proc, run.name)


def _states(c: Client) -> set[str]:
    return {a["state"] for a in c.status()["actors"].values()}


def test_every_command_acts_when_allowed_and_is_refused_with_a_reason_otherwise(
    served: Served,
) -> None:
    with served.client() as c:
        assert _states(c) == {"created"}
        for command in ("run", "pause", "resume", "stop"):
            with pytest.raises(RemoteError) as refused:
                c.request(command)
            assert "not" in str(refused.value)
            assert _states(c) == {"created"}
        with pytest.raises(RemoteError, match=r"run is not allowed while created .*: src"):
            c.request("run")
        c.request("setup")
        assert _states(c) == {"ready"}
        with pytest.raises(RemoteError, match="setup is not allowed while ready"):
            c.request("setup")
        with pytest.raises(RemoteError, match="pause is not allowed while ready"):
            c.request("pause")
        c.request("run")
        assert _states(c) == {"running"}
        c.request("pause", "mid")
        assert c.status()["actors"]["mid"]["state"] == "paused"
        with pytest.raises(RemoteError, match=r"resume is not allowed while running .*: src"):
            c.request("resume", "src")
        with pytest.raises(RemoteError, match="no such actor: nope"):
            c.request("pause", "nope")
        c.request("pause")
        assert _states(c) == {"paused"}
        c.request("resume")
        assert _states(c) == {"running"}
        c.request("stop")
        assert _states(c) == {"stopped"}
        with pytest.raises(RemoteError, match="stop is not allowed while stopped"):
            c.request("stop")
        c.request("run")
        assert _states(c) == {"running"}
        with pytest.raises(RemoteError, match="unknown command 'fly'"):
            c.request("fly")
        assert c.request("quit") == "quitting"
    served.proc.wait(30)
    assert served.proc.returncode == 0


def test_pause_stops_the_flow_and_resume_continues(served: Served) -> None:
    with served.client() as c:
        c.request("setup")
        c.request("run")
        wait_for(lambda: c.status()["actors"]["mid"]["msgs_in"] > 20, 10, "frames to flow")
        c.request("pause")
        held = c.status()["links"]["src.out->mid.inp"]["sent"]
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end:
            assert c.status()["links"]["src.out->mid.inp"]["sent"] == held
        c.request("resume")
        wait_for(
            lambda: c.status()["links"]["src.out->mid.inp"]["sent"] > held + 5,
            10,
            "frames to flow again",
        )


def test_a_late_client_gets_the_snapshot_first_then_live_events(served: Served) -> None:
    with served.client() as c:
        c.request("setup")
        c.request("run")
        wait_for(lambda: len(c.request("logs", lines=5)) >= 5, 10, "some log lines")
    with served.client() as late:
        snap = late.subscribe()
        assert snap["config"]["actors"]["src"]["target"] == "actors:Source"
        assert snap["status"]["actors"]["src"]["state"] == "running"
        assert snap["logs"], "the snapshot carries the last log lines"
        late.request("pause", "mid")
        kinds: dict[str, list[proto.Event]] = {}
        deadline = time.monotonic() + 5
        for event in late.events(timeout=1.0):
            assert event.seq > 0
            kinds.setdefault(event.kind, []).append(event)
            if ("state" in kinds and "metrics" in kinds) or time.monotonic() > deadline:
                break
        assert {"actor": "mid", "state": "paused"} in [e.data for e in kinds["state"]]
        assert all(e.seq > snap["seq"] for e in kinds["state"])


def test_log_records_from_two_actors_arrive_merged_with_names(tmp_path: Path) -> None:
    text = """
actors:
  one: {class: "actors:Chatty"}
  two: {class: "actors:Chatty"}
"""
    cfg = tmp_path / "talk.yaml"
    cfg.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "run", str(cfg), "--duration", "1.5", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    log_dir = Path(os.environ["PLEXA_LOG_DIR"])
    run_id = json.loads(result.stdout)["run"]["id"]
    [log_file] = log_dir.glob(f"*-{run_id}.log")
    lines = log_file.read_text().splitlines()
    ones = [ln for ln in lines if " one INFO plexa.actor.one: line" in ln]
    twos = [ln for ln in lines if " two INFO plexa.actor.two: line" in ln]
    assert len(ones) > 5 and len(twos) > 5
    assert any(" one INFO stdout: hello from one" in ln for ln in lines)
    stamps = [ln[:23] for ln in lines]
    assert stamps == sorted(stamps), "records are merged in time order"


def test_garbage_on_the_control_endpoint_gets_errors_and_the_run_goes_on(served: Served) -> None:
    with served.client() as c:
        c.request("setup")
        c.request("run")
        record = next(
            r
            for r in __import__("plexa.nexus.cleanup", fromlist=["x"]).list_runs()
            if r.name == served.name
        ).record
        good = proto.encode(proto.Request(id=7, token=record["token"], command="status"))
        rng = random.Random(1)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(record["endpoints"]["control"])
        answered = 0
        for i in range(1000):
            if i % 3 == 0:
                frame = good[: rng.randrange(len(good))]
            elif i % 3 == 1:
                frame = rng.randbytes(rng.randrange(1, 200))
            else:
                frame = bytes([0x81, 0xA1, 0x76]) + rng.randbytes(5)
            sock.send(frame)
        deadline = time.monotonic() + 10
        while answered < 1000 and time.monotonic() < deadline:
            if sock.poll(500):
                resp = proto.decode_response(sock.recv())
                assert not resp.ok
                answered += 1
        sock.close()
        ctx.term()
        assert answered == 1000
        before = c.status()["actors"]["mid"]["msgs_in"]
        wait_for(
            lambda: c.status()["actors"]["mid"]["msgs_in"] > before + 10,
            10,
            "the pipeline to keep flowing",
        )
        assert _states(c) == {"running"}


def test_a_wrong_token_is_refused(served: Served) -> None:
    with served.client() as c:
        bad = Client(c.sock.getsockopt_string(zmq.LAST_ENDPOINT), c.events_endpoint, "wrong")
        with bad, pytest.raises(RemoteError, match="wrong or missing token"):
            bad.request("setup")
        assert _states(c) == {"created"}


@pytest.mark.serial
def test_a_stalled_subscriber_does_not_slow_the_pipeline(served: Served) -> None:
    link = "src.out->mid.inp"

    def rate_over(seconds: float) -> float:
        start, t0 = c.status()["links"][link]["sent"], time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > seconds, seconds + 2, f"{seconds} s")
        return (c.status()["links"][link]["sent"] - start) / (time.monotonic() - t0)

    with served.client() as c:
        c.request("setup")
        c.request("run")
        wait_for(lambda: c.status()["actors"]["mid"]["rate_in"] > 50, 10, "the flow")
        before = rate_over(2.0)  # compared within this run: the machine may be busy
        ctx = zmq.Context()
        stalled = ctx.socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 1024)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(c.events_endpoint)  # and never read from it
        during = rate_over(3.0)
        stalled.close(0)
        ctx.term()
        assert during > 0.6 * before, f"{during:.0f} msg/s stalled vs {before:.0f} before"


def _record(name: str) -> dict[str, Any]:
    from plexa.nexus.cleanup import list_runs

    return next(r for r in list_runs() if r.name == name).record


def _dealer(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _answer(sock: zmq.Socket[Any], timeout: float = 10.0) -> proto.Response:
    assert sock.poll(int(timeout * 1000)), "no answer"
    return proto.decode_response(sock.recv())


NESTED = b"\x82\xa7command\xa4ping\xa4args\x81\xa1a" + b"\x91" * 1000 + b"\xc0"


def test_a_deeply_nested_frame_without_a_token_gets_an_error_and_the_run_goes_on(
    served: Served,
) -> None:
    assert len(NESTED) == 1023
    record = _record(served.name)
    with served.client() as c, zmq.Context() as ctx:
        c.request("setup")
        c.request("run")
        sock = _dealer(ctx, record["endpoints"]["control"])
        sock.send(NESTED)
        resp = _answer(sock)
        assert not resp.ok and "malformed request" in resp.error
        token = record["token"]
        deep: Any = 1
        for _ in range(proto.MAX_DEPTH + 1):
            deep = [deep]
        sock.send(proto.encode(proto.Request(token=token, command="ping", args={"a": deep})))
        resp = _answer(sock)
        assert not resp.ok and f"deeper than {proto.MAX_DEPTH}" in resp.error
        sock.send(proto.encode(proto.Request(id=5, token=token, command="ping")))
        assert _answer(sock).value == "pong"
        sock.close()
        before = c.status()["actors"]["mid"]["msgs_in"]
        wait_for(lambda: c.status()["actors"]["mid"]["msgs_in"] > before + 10, 10, "more frames")
    assert served.proc.poll() is None


def test_a_frame_over_the_size_limit_costs_only_its_sender_the_connection(served: Served) -> None:
    record = _record(served.name)
    with served.client() as c, zmq.Context() as ctx:
        big = _dealer(ctx, record["endpoints"]["control"])
        request = proto.Request(token=record["token"], command="ping", args={"x": "y" * (1 << 20)})
        big.send(proto.encode(request))
        assert not big.poll(1000), "an oversized frame is not answered"
        big.close()
        assert c.request("ping") == "pong"
    assert served.proc.poll() is None


INVOKABLE = """
actors:
  fit: {class: "actors:LongFit", options: {chunk_s: 0.0005}}
"""


@pytest.mark.parametrize("served", [INVOKABLE], indirect=True)
def test_four_hundred_back_to_back_invokes_are_all_answered_in_order(served: Served) -> None:
    record = _record(served.name)
    with served.client() as c, zmq.Context() as ctx:
        c.request("setup")
        c.request("run")
        sock = _dealer(ctx, record["endpoints"]["control"])
        for i in range(1, 401):
            req = proto.Request(
                id=i, token=record["token"], command="invoke", actor="fit",
                args={"method": "where", "args": [], "timeout_s": 60.0},
            )  # fmt: skip
            sock.send(proto.encode(req))
        watcher = _dealer(ctx, record["endpoints"]["control"])
        watcher.send(proto.encode(proto.Request(id=9, token=record["token"], command="status")))
        answers = [_answer(sock, 60.0) for _ in range(400)]
        assert [a.id for a in answers] == list(range(1, 401))
        assert all(a.ok for a in answers), [a.error for a in answers if not a.ok][:3]
        values = [a.value for a in answers]
        assert values == sorted(values)
        assert _answer(watcher).ok, "a status request is answered while invokes wait"
        sock.close()
        watcher.close()


def test_refusals_are_logged_once_per_interval_and_truncated(served: Served) -> None:
    record = _record(served.name)
    with zmq.Context() as ctx:
        sock = _dealer(ctx, record["endpoints"]["control"])
        for _ in range(50):
            sock.send(proto.encode(proto.Request(token="wrong", command="x" * 100_000)))
        for _ in range(50):
            assert "wrong or missing token" in _answer(sock).error
        sock.close()
    with served.client() as c:
        c.request("quit")
    _, err = served.proc.communicate(timeout=30)
    refusals = [line for line in err.splitlines() if "wrong or missing token" in line]
    assert len(refusals) == 1, refusals
    assert len(err) < 5_000, f"{len(err)} bytes of stderr for 50 refused requests"


def test_the_server_has_one_handler_for_every_command_of_the_protocol() -> None:
    from plexa import Nexus, load
    from plexa.nexus.server import ControlServer

    spec = load(ROOT / "examples" / "imaging.yaml")
    server = ControlServer(Nexus(spec))
    try:
        assert set(server._handlers) == set(proto.COMMANDS)
        assert set(proto.COMMANDS) == {c.value for c in proto.Command}
    finally:
        server.close()


DOCUMENTED = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  mid: {class: "actors:Sink", restart: on-failure}
  fit:
    class: "actors:LongFit"
    options: {chunk_s: 0.002, improve_every: 5}
    progress_delta: 0.2
    improved_delta: 0.2
  talk: {class: "actors:Chatty"}
connections:
  src.out: [mid.inp]
"""


def _same_shape(doc: Any, plain: Any) -> None:
    """``doc`` (a document encoded and read back) and ``plain`` have the same keys, in order."""
    if isinstance(plain, dict):
        assert list(doc) == list(plain)
        for key in plain:
            _same_shape(doc[key], plain[key])
    else:
        assert doc == plain


@pytest.mark.parametrize("served", [DOCUMENTED], indirect=True)
def test_the_status_and_every_event_kind_match_their_documents(served: Served) -> None:
    import msgspec

    from plexa.core import documents

    record = _record(served.name)
    with served.client() as c:
        c.subscribe()
        c.request("setup")
        c.request("run")
        wait_for(lambda: c.status()["actors"]["mid"]["msgs_in"] > 5, 10, "frames to flow")
        c.request("kill", "mid")
        c.request("abort", "fit")
        with (
            Client(c.sock.getsockopt_string(zmq.LAST_ENDPOINT), c.events_endpoint, "wrong") as bad,
            pytest.raises(RemoteError),
        ):
            bad.request("ping")
        seen: dict[str, proto.Event] = {}
        # warning: only on a bad day (a full disk); job: only with jobs (tests/test_jobs.py)
        wanted = set(documents.EVENT_KINDS) - {"warning", "job"}
        deadline = time.monotonic() + 20
        for event in c.events(timeout=2.0):
            doc = event.document()
            assert isinstance(doc, documents.EVENT_TYPES[event.kind])
            _same_shape(json.loads(msgspec.json.encode(doc)), event.data)
            seen.setdefault(event.kind, event)
            if wanted <= set(seen) or time.monotonic() > deadline:
                break
        assert set(seen) == wanted
        assert seen["refused"].data["reason"] == "wrong or missing token"
        status = c.status()
        doc = msgspec.convert(status, documents.Status)
        _same_shape(json.loads(msgspec.json.encode(doc)), status)
        assert "progress" in status["actors"]["fit"] and "failure" not in status["actors"]["src"]
    assert record["token"]


def test_a_request_head_is_read_without_its_args_and_args_nest_at_most_max_depth() -> None:
    with pytest.raises(ValueError, match="nesting too deep"):
        proto.decode_head(NESTED)
    head = proto.decode_head(proto.encode(proto.Request(token="t", command="ping", args={})))
    assert (head.token, head.command, head.request().args) == ("t", "ping", {})
    for depth, ok in ((proto.MAX_DEPTH - 1, True), (proto.MAX_DEPTH, False)):
        deep: Any = 1
        for _ in range(depth):
            deep = [deep]
        head = proto.decode_head(proto.encode(proto.Request(command="set", args={"v": deep})))
        if ok:
            assert head.request().args == {"v": deep}
        else:
            with pytest.raises(ValueError, match="deeper than"):
                head.request()


def test_the_server_counts_what_it_received_answered_refused_and_could_not_read() -> None:
    import threading

    from plexa import Nexus, load
    from plexa.nexus.server import ControlServer

    nexus = Nexus(load(ROOT / "examples" / "imaging.yaml"))
    server = ControlServer(nexus)
    done = threading.Event()
    try:
        nexus.start()
        thread = threading.Thread(target=lambda: server.serve(done.is_set), daemon=True)
        thread.start()
        with zmq.Context() as ctx:
            sock = _dealer(ctx, server.control_endpoint)
            frames = [
                proto.encode(proto.Request(id=1, token=server.token, command="ping")),
                proto.encode(proto.Request(id=2, token="wrong", command="ping")),
                b"\x00garbage",
                NESTED,
                proto.encode(proto.Request(id=3, token=server.token, command="fly")),
            ]
            for frame in frames:
                sock.send(frame)
            answers = [_answer(sock) for _ in frames]
            sock.close()
        assert [a.ok for a in answers] == [True, False, False, False, False]
        assert [a.id for a in answers] == [1, 2, 0, 0, 3]
        wait_for(lambda: server.statistics().answered == 5, 5, "the counts")
        stats = server.statistics()
        assert (stats.received, stats.refused, stats.malformed, stats.dropped) == (5, 1, 2, 0)
        assert stats.queued == 0
    finally:
        done.set()
        thread.join(10)
        server.close()
        nexus.quit()
