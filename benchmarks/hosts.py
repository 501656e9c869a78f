"""Cross-host benchmark: plexa cross-host links against raw Zenoh and raw pyzmq, between two
network namespaces joined by a veth pair (MTU 1500, like a real Ethernet link).

``sudo python benchmarks/hosts.py [--reps N] [--quick] [--write]`` measures, in one run:

1. lossless throughput of 100-byte messages and of 512 KB frames (messages/s at the
   receiver, first to last message), with the CPU each side spends per message. plexa's
   sender batches small messages as an actor's port does: "100 B" is one step putting them
   all (flushed at its end), "one per step" flushes after each message, as the runtime does
   at the end of every step (the raw systems run the same loop in both);
2. one-way latency p50/p99 of 100-byte messages and 512 KB frames sent at 200 Hz (the
   monotonic clock is shared across namespaces: latency is measured directly).

Each repetition runs every system once per case, in turns, in fresh processes (receiver in
namespace B listening, sender in namespace A connecting), so that all three see the same
machine; the table shows medians over repetitions. plexa's link uses the ``block`` policy
with a capacity of 1024 messages for 100 B (the raw systems queue ~1000) and 8 for frames.
Plain tcp for all three (``insecure: true``), so the comparison is of the link, not of TLS.
``--write`` puts the table into BENCHMARKS.md between the ``<!-- hosts -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import _report  # noqa: E402

PEER = Path(__file__).resolve().with_name("_hosts_peer.py")
SYSTEMS = ("plexa", "zenoh", "zmq")
BEGIN, END = "<!-- hosts -->", "<!-- /hosts -->"
A_IP, B_IP = "198.18.0.1", "198.18.0.2"


class Namespaces:
    """Namespaces A and B joined by a veth pair (198.18.0.0/30, the benchmarking range)."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.a, self.b = f"plxbA{tag}", f"plxbB{tag}"
        va, vb = f"plxbva{tag}", f"plxbvb{tag}"
        run = self._run
        run("ip", "netns", "add", self.a)
        run("ip", "netns", "add", self.b)
        run("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        for dev, ns, ip in ((va, self.a, A_IP), (vb, self.b, B_IP)):
            run("ip", "link", "set", dev, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def _run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def measure(
    ns: Namespaces, system: str, count: int, size: int, rate: float, port: int
) -> dict[str, Any]:
    """One sender/receiver pair; the receiver's report plus the sender's CPU."""
    endpoint = f"tcp/{B_IP}:{port}" if system != "zmq" else f"tcp://{B_IP}:{port}"
    capacity = 1024 if size < 65536 else 8
    common = [system, endpoint, str(count), str(size), str(capacity)]
    py = sys.executable
    rx = subprocess.Popen(
        ["ip", "netns", "exec", ns.b, py, str(PEER), "rx", *common],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    tx = None
    try:
        assert rx.stdout is not None
        json.loads(rx.stdout.readline())  # ready
        tx = subprocess.Popen(
            ["ip", "netns", "exec", ns.a, py, str(PEER), "tx", *common, str(rate)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        out, _ = rx.communicate(timeout=300)
        txo, _ = tx.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result.update(json.loads(txo.strip().splitlines()[-1]))
        return result
    finally:
        for proc in (rx, tx):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


CASES = {
    "100 B, msg/s": (100, 0.0),
    "100 B, one per step, msg/s": (100, -1.0),
    "512 KB, frames/s": (512 * 1024, 0.0),
    "latency 100 B @ 200 Hz": (100, 200.0),
    "latency 512 KB @ 200 Hz": (512 * 1024, 200.0),
}


def run(reps: int, quick: bool, only: str = "") -> dict[str, dict[str, list[dict[str, Any]]]]:
    counts = {
        "100 B, msg/s": 100_000,
        "100 B, one per step, msg/s": 100_000,
        "512 KB, frames/s": 2000,
        "latency 100 B @ 200 Hz": 1000,
        "latency 512 KB @ 200 Hz": 1000,
    }
    if quick:
        counts = {k: max(v // 10, 100) for k, v in counts.items()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        c: {s: [] for s in SYSTEMS} for c in CASES if only in c
    }
    ns = Namespaces()
    port = 21000 + os.getpid() % 1000 * 10
    try:
        for rep in range(reps):
            for case in results:
                size, rate = CASES[case]
                for system in SYSTEMS:
                    port += 1
                    r = measure(ns, system, counts[case], size, rate, port)
                    r["load"] = round(os.getloadavg()[0], 1)
                    results[case][system].append(r)
                    print(f"rep {rep + 1} {case:26s} {system:6s} {json.dumps(r)}", flush=True)
    finally:
        ns.close()
    return results


def _med(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def _ratio(per: dict[str, list[dict[str, Any]]], key: str) -> float:
    """Median over repetitions of plexa / raw Zenoh within each repetition (both ran in the
    same turn, so they saw the same machine; the load swings between repetitions)."""
    pairs = zip(per["plexa"], per["zenoh"], strict=True)
    return statistics.median(p[key] / z[key] for p, z in pairs if p.get(key) and z.get(key))


def table(results: dict[str, dict[str, list[dict[str, Any]]]], reps: int) -> str:
    load = statistics.median(r["load"] for c in results.values() for s in c.values() for r in s)
    lines = [
        BEGIN,
        "## Hosts: plexa cross-host links vs raw Zenoh vs raw pyzmq (`benchmarks/hosts.py`)",
        "",
        f"{_report.machine(('eclipse-zenoh', 'pyzmq', 'numpy', 'plexa'))}; "
        f"{dt.date.today()}; two network namespaces over veth (MTU 1500), plain tcp; "
        f"median of {reps} repetitions; load average ~{load} (other sessions' tests).",
        "",
        "| case | plexa link | raw Zenoh | raw pyzmq | plexa / Zenoh |",
        "|---|---|---|---|---|",
    ]
    for case, per in results.items():
        if case.startswith("latency"):
            cells = [
                f"{_med(per[s], 'p50_us'):.0f} / {_med(per[s], 'p99_us'):.0f} us" for s in SYSTEMS
            ]
            ratio = _ratio(per, "p50_us")
            name = f"{case}, p50 / p99"
        else:
            cells = [
                f"{_med(per[s], 'msg_per_s'):,.0f} (rx {_med(per[s], 'rx_cpu_us'):.0f} us, "
                f"tx {_med(per[s], 'tx_cpu_us'):.0f} us CPU)"
                for s in SYSTEMS
            ]
            ratio = _ratio(per, "msg_per_s")
            name = case
        lost = sum(r["gaps"] for s in SYSTEMS for r in per[s])
        loss = f" (LOSS: {lost})" if lost else ""
        lines.append(f"| {name}{loss} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    lines += [
        "",
        "plexa / Zenoh is the median of the per-repetition ratios. "
        "Targets (issue 14): throughput >= 0.8x raw Zenoh, latency p50 <= 1.3x raw Zenoh. "
        "Nothing was lost in any run unless the case says LOSS. CPU per message includes every "
        "thread of the process (Zenoh's runtime threads too).",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke test, 1/10 the messages")
    parser.add_argument("--write", action="store_true", help="write into BENCHMARKS.md")
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/hosts.py creates network namespaces: run it as root")
    results = run(args.reps, args.quick, args.only)
    text = table(results, args.reps)
    print(text)
    if args.write:
        _report.write_section(text, BEGIN, END)


if __name__ == "__main__":
    main()
