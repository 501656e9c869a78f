"""Presence of a run's members on Zenoh liveliness tokens: arrivals, departures after
``kill -9`` and after a cut cable (network namespaces), within the 2 s the design promises."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed (extra 'hosts')")

from netns import Hosts, netns_reason
from plexa.data.zenoh_presence import Presence
from plexa.data.zenoh_session import ZenohSettings, open_session

HERE = Path(__file__).parent
DEPARTURE = 2.0
"""Seconds within which a departed member must be noticed (issue 14)."""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _member(settings: ZenohSettings, name: str, ns: str | None = None) -> subprocess.Popen[str]:
    cmd = ["ip", "netns", "exec", ns] if ns else []
    proc = subprocess.Popen(
        [
            *cmd,
            sys.executable,
            str(HERE / "zenoh_peer.py"),
            "member",
            msgspec.json.encode(settings).decode(),
            name,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    return proc


class Watcher:
    def __init__(self, settings: ZenohSettings, name: str = "nexus") -> None:
        self.session = open_session(settings)
        self.changes: list[tuple[str, bool, float]] = []
        self.presence = Presence(
            self.session,
            "test",
            name,
            lambda who, present: self.changes.append((who, present, time.monotonic())),
        )

    def close(self) -> None:
        self.presence.close()
        self.session.close()


@pytest.fixture
def watcher() -> Iterator[tuple[Watcher, str]]:
    ep = f"tcp/127.0.0.1:{_port()}"
    w = Watcher(ZenohSettings(listen=(ep,)))
    yield w, ep
    w.close()


def test_members_see_each_other_arrive_and_an_orderly_leaver_go(
    watcher: tuple[Watcher, str],
) -> None:
    w, ep = watcher
    other = Watcher(ZenohSettings(connect=(ep,)), "agent-1")
    try:
        w.presence.wait("agent-1", timeout=10)
        other.presence.wait("nexus", timeout=10)
        assert w.presence.members() == {"nexus", "agent-1"}
    finally:
        other.close()
    w.presence.wait("agent-1", present=False, timeout=DEPARTURE)


def test_a_member_killed_with_sigkill_is_gone_for_the_others_within_2_s(
    watcher: tuple[Watcher, str],
) -> None:
    w, ep = watcher
    proc = _member(ZenohSettings(connect=(ep,)), "agent-1")
    try:
        w.presence.wait("agent-1", timeout=10)
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        w.presence.wait("agent-1", present=False, timeout=DEPARTURE + 3)
    finally:
        proc.kill()
        proc.wait()
    gone = [t for who, present, t in w.changes if who == "agent-1" and not present]
    assert gone and gone[0] - killed < DEPARTURE


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    reason = netns_reason()
    if reason:
        pytest.skip(reason)
    h = Hosts()
    yield h
    h.close()


@pytest.mark.slow
def test_a_member_behind_a_cut_cable_is_gone_within_2_s_and_back_when_it_is_restored(
    hosts: Hosts,
) -> None:
    ep = f"tcp/198.18.0.2:{_port()}"
    member = _member(ZenohSettings(listen=(ep,), insecure=True), "agent-b", hosts.b)
    watcher = subprocess.Popen(
        ["ip", "netns", "exec", hosts.a, sys.executable, "-c", _WATCH, ep],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    try:
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["present"] is True  # it has arrived
        cut = time.monotonic()
        hosts.link(up=False)
        gone = json.loads(watcher.stdout.readline())
        assert gone["present"] is False and gone["t"] - cut < DEPARTURE
        time.sleep(0.5)
        restored = time.monotonic()
        hosts.link(up=True)
        back = json.loads(watcher.stdout.readline())
        assert back["present"] is True and back["t"] - restored < 10
    finally:
        hosts.link(up=True)
        for proc in (watcher, member):
            proc.kill()
            proc.wait()


_WATCH = """
import json, sys, time
from plexa.data.zenoh_presence import Presence
from plexa.data.zenoh_session import ZenohSettings, open_session
session = open_session(ZenohSettings(connect=(sys.argv[1],), insecure=True))
def change(who, present):
    if who == "agent-b":
        print(json.dumps({"present": present, "t": time.monotonic()}), flush=True)
presence = Presence(session, "test", "nexus", change)
try:
    time.sleep(60)
finally:
    session.close()
"""
