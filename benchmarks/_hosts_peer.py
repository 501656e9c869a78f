"""One end of a benchmarks/hosts.py measurement, run inside a network namespace.

    python _hosts_peer.py rx SYSTEM ENDPOINT COUNT SIZE CAPACITY
    python _hosts_peer.py tx SYSTEM ENDPOINT COUNT SIZE CAPACITY RATE_HZ (< 0: unpaced)

SYSTEM: ``plexa`` (a cross-host link, block policy, batching small messages as an actor's
port does; RATE_HZ 0: the whole loop is one step, flushed at its end; otherwise it flushes
after each message, as the runtime does at the end of each step: RATE_HZ -1 is one message
per step, unpaced), ``zenoh`` (raw publisher/subscriber,
congestion control BLOCK, callback subscriber), ``zmq`` (PUSH/PULL, high-water mark 1000).
Every message starts with its sequence number and ``time.monotonic_ns()`` at sending: the
monotonic clock is shared by every namespace of one kernel, so latency is one-way. The
receiver prints one JSON line: messages/s between the first and last message, latency
percentiles, CPU per message (all threads of the process); the sender prints its CPU.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

STAMP = struct.Struct("<QQ")


class Receiver:
    """Counts messages and keeps one-way latencies."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.n = 0
        self.gaps = 0
        self.expected = 0
        self.lat: list[int] = []
        self.t0 = self.t1 = 0
        self.cpu0 = 0.0
        self.done = threading.Event()

    def on(self, head: Any) -> None:
        seq, t_ns = STAMP.unpack_from(head)
        now = time.monotonic_ns()
        if self.n == 0:
            self.t0, self.cpu0 = now, time.process_time()
        self.t1 = now
        self.gaps += seq - self.expected
        self.expected = seq + 1
        self.n += 1
        self.lat.append(now - t_ns)
        if seq + 1 >= self.count:
            self.done.set()

    def report(self) -> dict[str, Any]:
        lat = sorted(self.lat)
        n = max(self.n - 1, 1)
        secs = max(self.t1 - self.t0, 1) / 1e9
        return {
            "received": self.n,
            "gaps": self.gaps,
            "msg_per_s": round(n / secs, 1),
            "p50_us": round(lat[len(lat) // 2] / 1e3, 1) if lat else None,
            "p99_us": round(lat[int(len(lat) * 0.99)] / 1e3, 1) if lat else None,
            "rx_cpu_us": round((time.process_time() - self.cpu0) / n * 1e6, 1),
        }


def _link(capacity: int) -> Any:
    from plexa.core.spec import LinkSpec

    return LinkSpec(src="a", src_port="out", dst="b", dst_port="inp", capacity=capacity)


def _settings(endpoint: str, listen: bool) -> Any:
    from plexa.data.zenoh_session import ZenohSettings

    eps = (endpoint,)
    return ZenohSettings(listen=eps if listen else (), connect=() if listen else eps, insecure=True)


def rx(system: str, endpoint: str, count: int, size: int, capacity: int) -> dict[str, Any]:
    acc = Receiver(count)
    if system == "plexa":
        from plexa.data.zenoh_inputs import ZenohInputPort
        from plexa.data.zenoh_links import open_session

        session = open_session(_settings(endpoint, listen=True))
        try:
            inp = ZenohInputPort(session, "bench", "b", "inp", [_link(capacity)])
            print(json.dumps({"ready": True}), flush=True)
            while not acc.done.is_set():
                acc.on(inp.get(timeout=60))
            inp.close()
        finally:
            session.close()
    elif system == "zenoh":
        import zenoh

        from plexa.data.zenoh_session import zenoh_config

        session = zenoh.open(zenoh_config(_settings(endpoint, listen=True)))
        try:
            sub = session.declare_subscriber("bench/x", lambda s: acc.on(s.payload.to_bytes()))
            print(json.dumps({"ready": True}), flush=True)
            acc.done.wait(120)
            sub.undeclare()
        finally:
            session.close()
    else:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.bind(endpoint)
        print(json.dumps({"ready": True}), flush=True)
        big = size >= 65536
        while not acc.done.is_set():
            if big:
                frame = sock.recv(copy=False)
                acc.on(frame.buffer)
            else:
                acc.on(sock.recv())
        sock.close(linger=0)
        ctx.term()
    return acc.report()


def _pace(rate: float) -> Any:
    period = 1.0 / rate if rate > 0 else 0.0
    t_next = time.monotonic()

    def wait() -> None:
        nonlocal t_next
        if period:
            t_next += period
            while time.monotonic() < t_next:
                pass

    return wait


def tx(system: str, endpoint: str, count: int, size: int, capacity: int, rate: float) -> float:
    pace = _pace(rate)
    if system == "plexa":
        from plexa.data.zenoh_links import ZenohOutputPort, open_session, wait_connected

        session = open_session(_settings(endpoint, listen=False))
        try:
            wait_connected(session, timeout=20)
            out = ZenohOutputPort(session, "bench", "a", "out", [_link(capacity)], batch=True)
            deadline = time.monotonic() + 20
            while not out._room() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            cpu0 = time.process_time()
            pace = _pace(rate)
            for i in range(count):
                pace()
                with out.loan(size, np.uint8) as frame:
                    STAMP.pack_into(frame, 0, i, time.monotonic_ns())  # type: ignore[arg-type]
                if rate:  # one message per turn: the runtime flushes at the turn's end
                    out.flush()
            cpu = time.process_time() - cpu0
            out.close()
        finally:
            session.close()
    elif system == "zenoh":
        import zenoh

        from plexa.data.zenoh_session import zenoh_config

        session = zenoh.open(zenoh_config(_settings(endpoint, listen=False)))
        try:
            pub = session.declare_publisher(
                "bench/x", congestion_control=zenoh.CongestionControl.BLOCK
            )
            deadline = time.monotonic() + 20
            while not pub.matching_status.matching and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.01)
            time.sleep(0.2)
            buf = bytearray(size)
            cpu0 = time.process_time()
            pace = _pace(rate)
            for i in range(count):
                pace()
                STAMP.pack_into(buf, 0, i, time.monotonic_ns())
                pub.put(buf)
            cpu = time.process_time() - cpu0
            time.sleep(0.5)
            pub.undeclare()
        finally:
            session.close()
    else:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(endpoint)
        time.sleep(0.5)
        buf = bytearray(size)
        cpu0 = time.process_time()
        pace = _pace(rate)
        for i in range(count):
            pace()
            STAMP.pack_into(buf, 0, i, time.monotonic_ns())
            sock.send(buf, copy=True)
        cpu = time.process_time() - cpu0
        sock.close(linger=10000)
        ctx.term()
    return cpu / count * 1e6


def main() -> None:
    role, system, endpoint = sys.argv[1:4]
    count, size, capacity = (int(a) for a in sys.argv[4:7])
    if role == "rx":
        print(json.dumps(rx(system, endpoint, count, size, capacity)), flush=True)
    else:
        cpu = tx(system, endpoint, count, size, capacity, float(sys.argv[7]))
        print(json.dumps({"tx_cpu_us": round(cpu, 1)}), flush=True)


if __name__ == "__main__":
    main()
