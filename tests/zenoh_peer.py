"""One end of a cross-host link in its own process, for tests/test_zenoh_links.py and
benchmarks/hosts.py.

    python zenoh_peer.py produce SETTINGS LINK COUNT SIZE RATE_HZ
    python zenoh_peer.py consume SETTINGS LINK COUNT DELAY_S TIMEOUT_S
    python zenoh_peer.py member SETTINGS NAME

SETTINGS and LINK are JSON (ZenohSettings, LinkSpec). The producer loans COUNT frames of
SIZE bytes (RATE_HZ 0: as fast as it can; small ones batched), closes (a last sync), prints
``{"sent": N}``.
The consumer takes messages (sleeping DELAY_S after each) until every one of the COUNT
messages is accounted for, then prints its statistics and latency percentiles as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import msgspec
import numpy as np

from plexa.core.spec import LinkSpec
from plexa.data.counters import percentile
from plexa.data.inputs import EMPTY
from plexa.data.zenoh_inputs import ZenohInputPort
from plexa.data.zenoh_links import (
    ZenohOutputPort,
    ZenohSettings,
    open_session,
    wait_connected,
)
from plexa.data.zenoh_presence import Presence

RUN = "test"


def produce(settings: ZenohSettings, link: LinkSpec, count: int, size: int, rate: float) -> None:
    session = open_session(settings)
    try:
        wait_connected(session, timeout=20)
        out = ZenohOutputPort(
            session, RUN, link.src, link.src_port, [link],
            authenticated=settings.authenticated, batch=True,
        )  # fmt: skip
        print(json.dumps({"ready": True}), flush=True)
        period = 1.0 / rate if rate else 0.0
        t_next = time.monotonic()
        for i in range(count):
            if period:  # a pause: what a batch holds goes first (as at a safe point)
                out.flush()
                t_next += period
                time.sleep(max(0.0, t_next - time.monotonic()))
            with out.loan(size, np.uint8) as frame:
                frame[:8] = np.frombuffer(i.to_bytes(8, "little"), np.uint8)
        sent = out.sent
        out.close()
        print(json.dumps({"sent": sent}), flush=True)
    finally:
        session.close()


def consume(
    settings: ZenohSettings, link: LinkSpec, count: int, delay: float, timeout: float
) -> None:
    session = open_session(settings)
    try:
        inp = ZenohInputPort(
            session, RUN, link.dst, link.dst_port, [link], authenticated=settings.authenticated
        )
        print(json.dumps({"ready": True}), flush=True)
        deadline = time.monotonic() + timeout
        bad = 0
        while time.monotonic() < deadline:
            msg = inp.take()
            if msg is EMPTY:
                stats = inp.statistics()[link.name]
                if stats.sent >= count and stats.received + stats.dropped + stats.lost >= count:
                    break
                time.sleep(0.001)
                continue
            if int.from_bytes(msg[:8].tobytes(), "little") >= count:
                bad += 1
            if delay:
                time.sleep(delay)
        stats = inp.statistics()[link.name]
        hist = inp.latency_hist(link.name)
        inp.close()
        print(
            json.dumps(
                {
                    "sent": stats.sent,
                    "received": stats.received,
                    "dropped": stats.dropped,
                    "lost": stats.lost,
                    "bad": bad,
                    "p50_us": percentile(hist, 0.5),
                    "p99_us": percentile(hist, 0.99),
                }
            ),
            flush=True,
        )
    finally:
        session.close()


def member(settings: ZenohSettings, name: str) -> None:
    """Be present as ``name`` until killed."""
    session = open_session(settings)
    try:
        presence = Presence(session, RUN, name)
        presence.wait(name, timeout=20)
        print(json.dumps({"ready": True}), flush=True)
        while True:
            time.sleep(1)
    finally:
        session.close()


def main() -> None:
    role = sys.argv[1]
    if role == "member":
        member(msgspec.json.decode(sys.argv[2], type=ZenohSettings), sys.argv[3])
        return
    settings = msgspec.json.decode(sys.argv[2], type=ZenohSettings)
    link = msgspec.json.decode(sys.argv[3], type=LinkSpec)
    if role == "produce":
        produce(settings, link, int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    else:
        consume(settings, link, int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))


if __name__ == "__main__":
    main()
