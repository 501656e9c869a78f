"""Who can reach a run's control and event endpoints: real servers, real sockets, real keys."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

from conftest import wait_for
from plexa.core import protocol as proto
from plexa.edges.client import Client, connect
from plexa.errors import PlexaError, RemoteError, Timeout
from plexa.nexus.cleanup import list_runs

ROOT = Path(__file__).resolve().parent.parent
PIPE = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  mid: {class: "actors:Sink"}
connections:
  src.out: [mid.inp]
"""
NESTED = b"\x82\xa7command\xa4ping\xa4args\x81\xa1a" + b"\x91" * 1000 + b"\xc0"


def host_address() -> str:
    """This host's own address on a non-loopback interface (loopback if it has none)."""
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return "127.0.0.1"


class Run:
    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc = proc
        self.name = name
        self.record: dict[str, Any] = next(r for r in list_runs() if r.name == name).record
        self.run_dir = Path(os.environ["PLEXA_RUNTIME_DIR"]) / self.record["run_id"]

    def port(self, which: str) -> str:
        return str(self.record["endpoints"][which].rsplit(":", 1)[1])


def _serve(tmp_path: Path, *bind: str) -> Iterator[Run]:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    yield from _serve_file(cfg, *bind)


def _serve_file(cfg: Path, *bind: str) -> Iterator[Run]:
    name = f"s{os.getpid()}{random.randrange(10**6)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name, *bind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )

    def up() -> bool:
        try:
            with connect(name, timeout=2.0) as c:
                return bool(c.status()["run"]["state"] == "running")
        except Exception:
            return False

    try:
        wait_for(up, 30, "the server to run")
        yield Run(proc, name)
    finally:
        if proc.poll() is None:
            try:
                with connect(name) as c:
                    c.request("quit")
            except Exception:
                proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture
def local_run(tmp_path: Path) -> Iterator[Run]:
    yield from _serve(tmp_path)


@pytest.fixture
def remote_run(tmp_path: Path) -> Iterator[Run]:
    yield from _serve(tmp_path, "--bind", "0.0.0.0")


def _quiet(sock: zmq.Socket[Any], seconds: float) -> bool:
    """True if nothing arrives on ``sock`` within ``seconds``."""
    return not sock.poll(int(seconds * 1000))


def test_a_local_run_serves_clients_on_ipc_sockets_in_its_private_run_directory(
    local_run: Run,
) -> None:
    record = local_run.record
    assert "curve" not in record
    for which in ("control", "events"):
        path = Path(record["endpoints"][which].removeprefix("ipc://"))
        assert path.parent == local_run.run_dir
        assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(local_run.run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((local_run.run_dir / "run.json").stat().st_mode) == 0o600
    with connect(local_run.name) as c:
        snap = c.subscribe(("metrics",))
        assert snap["status"]["run"]["state"] == "running"
        assert next((e for e in c.events(timeout=3.0) if e.kind == "metrics"), None)


def test_an_unauthenticated_subscriber_of_an_off_host_run_receives_nothing(
    remote_run: Run,
) -> None:
    host = host_address()
    curve = remote_run.record["curve"]
    events = f"tcp://{host}:{remote_run.port('events')}"
    with zmq.Context() as ctx:
        plain = ctx.socket(zmq.SUB)
        stranger = ctx.socket(zmq.SUB)
        public, secret = zmq.curve_keypair()
        stranger.setsockopt(zmq.CURVE_SERVERKEY, curve["server_key"].encode())
        stranger.setsockopt(zmq.CURVE_PUBLICKEY, public)
        stranger.setsockopt(zmq.CURVE_SECRETKEY, secret)
        for sock in (plain, stranger):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(events)
        with Client.from_record(remote_run.record, host=host) as client:
            client.subscribe(("metrics",))
            got = next((e for e in client.events(timeout=3.0) if e.kind == "metrics"), None)
            assert got is not None, "the run's own key receives events"
        # Metrics are published twice a second: three seconds of silence is not a gap.
        assert _quiet(plain, 3.0), "a subscriber without keys received an event"
        assert _quiet(stranger, 0.5), "a subscriber with an unknown key received an event"
        plain.close()
        stranger.close()


def test_an_off_host_run_answers_only_its_keys_and_then_only_with_the_token(
    remote_run: Run, tmp_path: Path
) -> None:
    host = host_address()
    record = remote_run.record
    control = f"tcp://{host}:{remote_run.port('control')}"
    with zmq.Context() as ctx:
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(control)
        plain.send(proto.encode(proto.Request(token=record["token"], command="ping")))
        assert _quiet(plain, 2.0), "a client without keys was answered"
        plain.close()
    public, secret = zmq.curve_keypair()
    for wrong in (
        {**record["curve"], "client_key": public.decode(), "client_secret": secret.decode()},
        {**record["curve"], "server_key": public.decode()},
    ):
        with (
            Client.from_record({**record, "curve": wrong}, host=host, timeout=1.5) as c,
            pytest.raises(Timeout),
        ):
            c.request("ping")
    with (
        Client.from_record({**record, "token": "wrong"}, host=host) as c,
        pytest.raises(RemoteError, match="wrong or missing token"),
    ):
        c.request("ping")
    with Client.from_record(record, host=host) as c:
        c.sock.send(NESTED)  # the 1,023-byte frame of issue 10, with the keys but no token
        assert c.sock.poll(5000)
        resp = proto.decode_response(c.sock.recv())
        assert not resp.ok and "malformed request" in resp.error
        assert c.request("ping") == "pong"
    copy = tmp_path / "run.json"
    shutil.copy(remote_run.run_dir / "run.json", copy)
    copy.chmod(0o644)
    with pytest.raises(PlexaError, match="readable by others"):
        connect(str(copy))
    copy.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "ctl", str(copy), "status", "--json", "--host", host],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"]["state"] == "running"  # the plain document
    assert remote_run.proc.poll() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_settings_control_and_output_fix_the_endpoints_and_keep_curve(tmp_path: Path) -> None:
    control, events = _free_port(), _free_port()
    fixed = (
        PIPE + f"settings:\n  control: tcp://127.0.0.1:{control}\n  output: 127.0.0.1:{events}\n"
    )
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(fixed)
    run_iter = _serve_file(cfg)
    run = next(run_iter)
    try:
        assert run.port("control") == str(control) and run.port("events") == str(events)
        assert run.record["curve"], "a tcp endpoint without CurveZMQ"
        with zmq.Context() as ctx:  # no keys: nothing
            plain = ctx.socket(zmq.DEALER)
            plain.setsockopt(zmq.LINGER, 0)
            plain.connect(f"tcp://127.0.0.1:{control}")
            plain.send(proto.encode(proto.Request(token=run.record["token"], command="ping")))
            assert _quiet(plain, 1.0), "a client without keys was answered"
            plain.close()
        with connect(run.name) as c:
            assert c.request("ping") == "pong"
        # a second run asking for the same port: a clear error, exit 2, no traceback
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        second = subprocess.run(
            [sys.executable, "-m", "plexa", "server", str(cfg), "--name", run.name + "b"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert f"cannot bind settings.control tcp://127.0.0.1:{control}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        run_iter.close()


def test_a_malformed_fixed_endpoint_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE + "settings:\n  control: ipc:///tmp/x\n")
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "validate", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "settings.control" in result.stdout + result.stderr
    assert "tcp://HOST:PORT" in result.stdout + result.stderr
