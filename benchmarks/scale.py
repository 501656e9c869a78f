"""How plexa's cost grows with the shape of a pipeline (issue 16, items 3 and 4).

* **fan-out**: one producer of 512 KB frames into 1, 2, 4 and 8 consumers (one input each);
* **fan-in**: 1, 2, 4 and 8 producers of 512 KB frames into one input;
* **chain**: a producer, N relays and a sink (N = 1, 5, 10, 20), 512 KB frames;
* **many actors**: 10 and 50 idle actors: time to ready (start + setup) and to quit.

Throughput: frames handled per second by the slowest consumer (fan-out), by the one
consumer (fan-in, all producers together) or by the sink (chain), lossless (``block``
links of 8), full speed, 3 s after 1 s of warm-up. Latency: the links' own p50 / p99 (put
to handler, sampled on one message in 8) at 200 Hz, 3 s; for a chain, per stage (the median
over its links) and end to end (the sum of the stages' p50). Every case is run ``--runs``
times; medians.

    python benchmarks/scale.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PLEXA_RUNTIME_DIR", tempfile.mkdtemp(prefix="plexa-bench-"))
os.environ.setdefault("PLEXA_LOG_DIR", tempfile.mkdtemp(prefix="plexa-bench-logs-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plexa
from _report import machine, write_section

FRAME = "shape: [512, 1024], dtype: uint8"
PRODUCER = "benchmarks.actors:Producer"
SINK = "benchmarks.actors:Sink"
RELAY = "benchmarks.actors:Relay"
LINK = "policy: block, capacity: 8"
BEGIN, END = "<!-- scale -->", "<!-- /scale -->"


def fan_out(n: int, rate: float) -> str:
    actors = [f"  p: {{class: '{PRODUCER}', options: {{{FRAME}, rate_hz: {rate}}}}}"]
    actors += [f"  c{i}: {{class: '{SINK}'}}" for i in range(n)]
    dests = ", ".join(f"c{i}.inp" for i in range(n))
    return "actors:\n" + "\n".join(actors) + f"\nconnections:\n  p.out: {{to: [{dests}], {LINK}}}\n"


def fan_in(n: int, rate: float) -> str:
    actors = [
        f"  p{i}: {{class: '{PRODUCER}', options: {{{FRAME}, rate_hz: {rate}}}}}" for i in range(n)
    ]
    actors.append(f"  c: {{class: '{SINK}'}}")
    links = [f"  p{i}.out: {{to: [c.inp], {LINK}}}" for i in range(n)]
    return "actors:\n" + "\n".join(actors) + "\nconnections:\n" + "\n".join(links) + "\n"


def chain(n: int, rate: float) -> str:
    actors = [f"  s0: {{class: '{PRODUCER}', options: {{{FRAME}, rate_hz: {rate}}}}}"]
    actors += [f"  s{i}: {{class: '{RELAY}'}}" for i in range(1, n + 1)]
    actors.append(f"  s{n + 1}: {{class: '{SINK}'}}")
    links = [f"  s{i}.out: {{to: [s{i + 1}.inp], {LINK}}}" for i in range(n + 1)]
    return "actors:\n" + "\n".join(actors) + "\nconnections:\n" + "\n".join(links) + "\n"


def idle(n: int) -> str:
    actors = [
        f"  t{i}: {{class: 'benchmarks.actors:Ticker', options: {{period: 60}}}}" for i in range(n)
    ]
    return "actors:\n" + "\n".join(actors) + "\n"


def measure(text: str, name: str, rate: float) -> dict[str, float]:
    """Frames/s of the slowest sink link (rate 0), or the links' latency (rate > 0)."""
    spec = plexa.loads(text, name)
    sinks = [link.name for link in spec.links if spec.actors[link.dst].target.endswith(":Sink")]
    with plexa.Nexus(spec) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.poll(1.0)
        before = nexus.status()["links"]
        t0 = time.monotonic()
        nexus.poll(3.0)
        after = nexus.status()["links"]
        elapsed = time.monotonic() - t0
        nexus.stop()
    received = {n: after[n]["received"] - before[n]["received"] for n in sinks}
    out: dict[str, float] = {}
    if rate == 0:
        one_sink = len({name.split("->")[1] for name in sinks}) == 1
        total = sum(received.values()) if one_sink else min(received.values())
        out["fps"] = total / elapsed
    else:
        p50 = [after[n]["latency_p50_us"] for n in after if after[n]["latency_p50_us"]]
        p99 = [after[n]["latency_p99_us"] for n in after if after[n]["latency_p99_us"]]
        out["p50"] = statistics.median(p50)
        out["p99"] = statistics.median(p99)
        out["sum_p50"] = sum(p50)
    for n in after:
        assert after[n]["lost"] == 0, f"{name}: {n} lost messages"
    return out


def lifecycle(n: int) -> dict[str, float]:
    nexus = plexa.Nexus(plexa.loads(idle(n), f"idle{n}"))
    t0 = time.perf_counter()
    nexus.start()
    nexus.setup()
    ready = time.perf_counter() - t0
    nexus.run()
    nexus.poll(0.2)
    t1 = time.perf_counter()
    report = nexus.quit()
    assert report.clean, report
    return {"ready": ready, "quit": time.perf_counter() - t1}


def medians(runs: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [fn() for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run, fewer shapes")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    sizes = (1, 8) if args.quick else (1, 2, 4, 8)
    lengths = (1, 20) if args.quick else (1, 5, 10, 20)
    began = time.time()
    rows: list[str] = []
    for label, make, ns in (
        ("fan-out", fan_out, sizes),
        ("fan-in", fan_in, sizes),
        ("chain", chain, lengths),
    ):
        for n in ns:
            fps = medians(runs, lambda m=make, k=n, t=label: measure(m(k, 0), f"{t}{k}", 0))
            lat = medians(runs, lambda m=make, k=n, t=label: measure(m(k, 200), f"{t}{k}", 200))
            end_to_end = f"{lat['sum_p50']:.0f}" if label == "chain" else "—"
            rows.append(
                f"| {label} | {n} | {fps['fps']:,.0f} | {lat['p50']:.0f} / {lat['p99']:.0f} "
                f"| {end_to_end} |"
            )
            print(rows[-1], flush=True)
    life = {n: medians(runs, lambda k=n: lifecycle(k)) for n in (10, 50)}
    for n, r in life.items():
        print(f"{n} actors: ready {r['ready']:.2f} s, quit {r['quit']:.2f} s", flush=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            BEGIN,
            "## Scale: fan-out, fan-in, chains, many actors (`benchmarks/scale.py`)",
            "",
            f"{machine()}; load average {load:.1f} at the end; {runs} run(s) per case, medians; "
            f"{time.time() - began:.0f} s in all. 512 KB frames (512x1024 uint8, `loan`), "
            "`block` links of 8, metrics on. frames/s: handled per second by the slowest "
            "consumer (fan-out), the one consumer of all producers (fan-in), the sink "
            "(chain). Latency: put to handler, the links' own p50 / p99 at 200 Hz (median "
            "over the pipeline's links, so per stage); for a chain also the sum of the "
            "stages' p50 (end to end).",
            "",
            "| shape | n | frames/s | per link p50 / p99 (µs) | chain end to end p50 (µs) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "| idle actors | ready (start + setup) | quit | target |",
            "|---|---|---|---|",
            *(
                f"| {n} | {r['ready']:.2f} s | {r['quit']:.2f} s | ready <= {goal} s, quit <= 1 s |"
                for (n, r), goal in zip(life.items(), (1.5, 5), strict=True)
            ),
            END,
        ]
    )
    write_section(text, BEGIN, END)


if __name__ == "__main__":
    main()
