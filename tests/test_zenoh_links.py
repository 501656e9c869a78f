"""Cross-host links on Zenoh: real processes over loopback, and over a veth pair between two
network namespaces where ``ip netns`` works (root; skipped with the reason otherwise)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

zenoh = pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed (extra 'hosts')")

from conftest import wait_for  # noqa: E402
from netns import Hosts, netns_reason  # noqa: E402
from plexa.core.spec import LinkSpec, Policy  # noqa: E402
from plexa.data.zenoh_inputs import ZenohInputPort  # noqa: E402
from plexa.data.zenoh_links import (  # noqa: E402
    TlsFiles,
    ZenohOutputPort,
    ZenohSettings,
    open_session,
    wait_connected,
)
from plexa.data.zenoh_session import check_settings, zenoh_config  # noqa: E402
from plexa.errors import ConfigError, PayloadError, Timeout, WouldBlock  # noqa: E402
from zenoh_certs import make_certs  # noqa: E402

HERE = Path(__file__).parent
PEER = HERE / "zenoh_peer.py"
RUN = "test"


def _port() -> int:
    """A free TCP port (the kernel's choice), for an endpoint to listen on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _link(policy: Policy = Policy.BLOCK, capacity: int = 8) -> LinkSpec:
    return LinkSpec(
        src="camera",
        src_port="frames",
        dst="traces",
        dst_port="frames",
        policy=policy,
        capacity=capacity,
    )


@pytest.fixture
def no_zenoh_shm() -> Iterator[None]:
    """Zenoh's shared memory stays off (on, it leaves *.zenoh files in /dev/shm; other
    programs on the machine may use Zenoh too, so /dev/shm itself is not compared)."""
    cfg = zenoh_config(ZenohSettings(listen=("tcp/127.0.0.1:0",)))
    assert cfg.get_json("transport/shared_memory/enabled") == "false"
    yield


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs") / "tls")


def _tls(certs: Path, name: str = "host") -> TlsFiles:
    return TlsFiles(
        ca=str(certs / "ca.pem"), cert=str(certs / f"{name}.pem"), key=str(certs / f"{name}.key")
    )


class Pair:
    """Two sessions in this process, one listening, one connected to it."""

    def __init__(self, listen: ZenohSettings, connect: ZenohSettings) -> None:
        self.a = open_session(listen)
        self.b = open_session(connect)
        self.ports: list[Any] = []
        wait_connected(self.b, timeout=10)

    def close(self) -> None:
        for port in self.ports:
            port.close()
        self.a.close()
        self.b.close()


@pytest.fixture
def pair(no_zenoh_shm: None) -> Iterator[Pair]:
    ep = f"tcp/127.0.0.1:{_port()}"
    p = Pair(ZenohSettings(listen=(ep,)), ZenohSettings(connect=(ep,)))
    yield p
    p.close()


def _ends(pair: Pair, link: LinkSpec, **kw: Any) -> tuple[ZenohOutputPort, ZenohInputPort]:
    inp = ZenohInputPort(pair.a, RUN, link.dst, link.dst_port, [link], **kw)
    out = ZenohOutputPort(pair.b, RUN, link.src, link.src_port, [link], **kw)
    pair.ports += [out, inp]
    return out, inp


def _spawn(argv: list[str], ns: str | None = None) -> subprocess.Popen[str]:
    cmd = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.Popen(
        [*cmd, sys.executable, str(PEER), *argv], stdout=subprocess.PIPE, text=True, cwd=HERE
    )


def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ready": True}


def _result(proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _stream(
    listen: ZenohSettings,
    connect: ZenohSettings,
    link: LinkSpec,
    count: int,
    size: int,
    delay: float = 0.0,
    rate: float = 0.0,
    ns: tuple[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A consumer process (listening) and a producer process (connecting): their results."""
    enc = msgspec.json.encode
    consumer = _spawn(
        ["consume", enc(listen).decode(), enc(link).decode(), str(count), str(delay), "80"],
        ns[1] if ns else None,
    )
    try:
        _ready(consumer)
        producer = _spawn(
            [
                "produce",
                enc(connect).decode(),
                enc(link).decode(),
                str(count),
                str(size),
                str(rate),
            ],
            ns[0] if ns else None,
        )
        try:
            sent = _result(producer)
        finally:
            producer.kill()
        return sent, _result(consumer)
    finally:
        consumer.kill()


@pytest.mark.slow
def test_a_block_link_between_two_processes_delivers_every_frame_to_a_slow_consumer(
    no_zenoh_shm: None,
) -> None:
    ep = f"tcp/127.0.0.1:{_port()}"
    sent, got = _stream(
        ZenohSettings(listen=(ep,)),
        ZenohSettings(connect=(ep,)),
        _link(Policy.BLOCK, capacity=4),
        count=200,
        size=65536,
        delay=0.002,
    )
    assert sent == {"sent": 200}
    assert got["received"] == 200 and got["dropped"] == 0 and got["lost"] == 0
    assert got["sent"] == 200 and got["bad"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("policy", [Policy.DROP_OLDEST, Policy.LATEST])
def test_drop_policies_never_make_the_producer_wait_and_count_every_skipped_message(
    policy: Policy, no_zenoh_shm: None
) -> None:
    ep = f"tcp/127.0.0.1:{_port()}"
    sent, got = _stream(
        ZenohSettings(listen=(ep,)),
        ZenohSettings(connect=(ep,)),
        _link(policy, capacity=4),
        count=300,
        size=4096,
        delay=0.005,
    )
    assert sent == {"sent": 300}
    assert got["sent"] == 300
    assert got["received"] + got["dropped"] == 300 and got["lost"] == 0
    assert got["dropped"] > 0 and got["received"] > 0


def test_a_full_block_link_makes_put_wait_until_the_consumer_takes_a_message(
    pair: Pair,
) -> None:
    out, inp = _ends(pair, _link(Policy.BLOCK, capacity=3))
    wait_for(out._room, 10, "the consumer to subscribe")
    for i in range(3):
        out.put_nowait(i)
    with pytest.raises(WouldBlock):
        out.put_nowait(3)
    with pytest.raises(Timeout):
        out.put(3, timeout=0.2)
    wait_for(inp.has_pending, 5, "the messages to arrive")
    assert inp.take() == 0
    wait_for(out._room, 5, "the acknowledgement to give room")
    out.put_nowait(3)
    assert [inp.get(timeout=5) for _ in range(3)] == [1, 2, 3]
    stats = inp.statistics()[_link().name]
    assert (stats.sent, stats.received, stats.dropped, stats.lost) == (4, 4, 0, 0)
    started = time.monotonic()
    with pytest.raises(Timeout):  # an empty link: the wait ends at its deadline
        inp.get(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 5


def test_arrays_of_any_plain_dtype_arrive_equal_and_read_only_and_plain_data_as_msgpack(
    pair: Pair,
) -> None:
    out, inp = _ends(pair, _link(Policy.BLOCK, capacity=16))
    wait_for(out._room, 10, "the consumer to subscribe")
    arrays = [
        np.arange(512 * 256, dtype=np.uint16).reshape(512, 256),
        np.linspace(0, 1, 7),
        np.array(["2026-12-02T10:00", "2026-12-02T10:01"], dtype="datetime64[10ms]"),
        np.zeros(3, dtype=[("x", "<f4"), ("t", "<m8[us]")]),
        np.arange(6)[::2],  # not contiguous
        np.zeros((0, 4), np.int8),
    ]
    for arr in arrays:
        out.put(arr)
    with out.loan((2, 3), np.int32) as frame:
        frame[:] = 7
    out.put({"roi": [1, 2], "name": "cell", "ok": True})
    for arr in arrays:
        got = inp.get(timeout=5)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert np.array_equal(got, arr)
        assert not got.flags.writeable
    assert np.array_equal(inp.get(timeout=5), np.full((2, 3), 7, np.int32))
    assert inp.get(timeout=5) == {"roi": [1, 2], "name": "cell", "ok": True}


def test_without_tls_objects_that_need_pickle_are_refused_by_the_producer_with_its_name(
    pair: Pair,
) -> None:
    out, _ = _ends(pair, _link())
    with pytest.raises(PayloadError, match=r"camera\.frames.*msgpack without TLS"):
        out.put(_Touch("x"))


def test_a_pickle_reaching_an_unauthenticated_consumer_is_counted_lost_never_loaded(
    pair: Pair, tmp_path: Path
) -> None:
    link = _link()
    inp = ZenohInputPort(pair.a, RUN, "traces", "frames", [link], authenticated=False)
    out = ZenohOutputPort(pair.b, RUN, "camera", "frames", [link], authenticated=True)
    pair.ports += [out, inp]
    wait_for(out._room, 10, "the consumer to subscribe")
    marker = tmp_path / "unpickled"
    out.put(_Touch(str(marker)))
    out.put(np.ones(2))
    assert np.array_equal(inp.get(timeout=5), np.ones(2))
    stats = inp.statistics()[link.name]
    assert (stats.received, stats.lost) == (1, 1)
    assert "unauthenticated" in inp.errors()[0]
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def test_plain_tcp_off_this_host_and_tls_without_certificates_are_refused() -> None:
    with pytest.raises(ConfigError, match="unencrypted"):
        check_settings(ZenohSettings(connect=("tcp/198.18.0.1:7447",)))
    with pytest.raises(ConfigError, match="certificate"):
        check_settings(ZenohSettings(listen=("tls/198.18.0.1:7447",)))
    with pytest.raises(ConfigError, match="only tcp"):
        check_settings(ZenohSettings(listen=("udp/127.0.0.1:7447",)))
    check_settings(ZenohSettings(connect=("tcp/127.0.0.1:7447", "tcp/localhost:7448")))
    check_settings(ZenohSettings(connect=("tcp/198.18.0.1:7447",), insecure=True))


def _user_timeouts(port: int) -> list[int]:
    """TCP_USER_TIMEOUT of this process's sockets connected from or to ``port``."""
    found = []
    for fd in (int(name) for name in os.listdir("/proc/self/fd")):
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            try:
                ends = (sock.getsockname()[1], sock.getpeername()[1])
            except (OSError, IndexError, TypeError):
                continue
            if sock.type == socket.SOCK_STREAM and port in ends:
                found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    return found


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_both_ends_of_a_connection_give_up_on_unacknowledged_data_after_the_lease() -> None:
    """Else closing a cut tls/ link hung in its flush, and the departure went unnoticed."""
    port = _port()
    a = open_session(ZenohSettings(listen=(f"tcp/127.0.0.1:{port}",), lease_ms=1500))
    b = open_session(ZenohSettings(connect=(f"tcp/127.0.0.1:{port}",), lease_ms=1500))
    try:
        wait_connected(b)
        wait_for(lambda: _user_timeouts(port) == [1500, 1500], 5, "both ends' user timeout")
    finally:
        b.close()
        a.close()


def test_mutual_tls_admits_a_host_signed_by_the_run_ca_and_refuses_any_other(
    certs: Path, no_zenoh_shm: None
) -> None:
    ep = f"tls/127.0.0.1:{_port()}"
    listener = open_session(ZenohSettings(listen=(ep,), tls=_tls(certs)))
    try:
        good = open_session(ZenohSettings(connect=(ep,), tls=_tls(certs)))
        try:
            wait_connected(good, timeout=10)
        finally:
            good.close()
        rogue = open_session(ZenohSettings(connect=(ep,), tls=_tls(certs, "rogue")))
        try:
            with pytest.raises(Timeout):
                wait_connected(rogue, timeout=2)
        finally:
            rogue.close()
    finally:
        listener.close()


# -- two hosts: network namespaces joined by a veth pair ------------------------------------


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = netns_reason()
    if reason:
        pytest.skip(reason)
    h = Hosts()
    yield h
    h.close()


@pytest.mark.slow
def test_between_two_namespaces_over_mutual_tls_every_frame_is_accounted(
    hosts: Hosts, certs: Path, no_zenoh_shm: None
) -> None:
    ep = f"tls/198.18.0.2:{_port()}"
    tls = _tls(certs)
    sent, got = _stream(
        ZenohSettings(listen=(ep,), tls=tls),
        ZenohSettings(connect=(ep,), tls=tls),
        _link(Policy.BLOCK, capacity=8),
        count=300,
        size=512 * 1024,
        ns=(hosts.a, hosts.b),
    )
    assert sent == {"sent": 300}
    assert (got["sent"], got["received"], got["dropped"], got["lost"], got["bad"]) == (
        300,
        300,
        0,
        0,
        0,
    )


@pytest.mark.slow
def test_a_cut_cable_loses_messages_that_are_counted_and_the_stream_goes_on_after_it(
    hosts: Hosts, no_zenoh_shm: None
) -> None:
    ep = f"tcp/198.18.0.2:{_port()}"
    link = _link(Policy.BLOCK, capacity=8)
    enc = msgspec.json.encode
    listen = ZenohSettings(listen=(ep,), insecure=True)
    connect = ZenohSettings(connect=(ep,), insecure=True)
    count = 600
    consumer = _spawn(
        ["consume", enc(listen).decode(), enc(link).decode(), str(count), "0", "80"], hosts.b
    )
    producer = None
    try:
        _ready(consumer)
        producer = _spawn(
            ["produce", enc(connect).decode(), enc(link).decode(), str(count), "1024", "200"],
            hosts.a,
        )
        _ready(producer)
        time.sleep(0.5)  # streaming at 200 Hz: then the cable is cut for 2.5 s
        hosts.link(up=False)
        time.sleep(2.5)
        hosts.link(up=True)
        assert _result(producer) == {"sent": count}
        got = _result(consumer)
    finally:
        hosts.link(up=True)
        for proc in (producer, consumer):
            if proc is not None:
                proc.kill()
    assert got["sent"] == count
    assert got["received"] + got["lost"] == count and got["dropped"] == 0
    assert got["lost"] > 0, "messages in flight when the cable was cut should count as lost"
    assert got["received"] > count - 3 * link.capacity
