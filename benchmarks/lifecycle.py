"""The lifecycle's cost: start, setup, run, stop and quit of an idle 3-actor pipeline.

For each phase: wall time, and the nexus's own CPU time (plexa's own time: what the nexus
process computes, as opposed to waiting for actor processes to import, exit, or the
machine to schedule them). As a floor, the same run starts and reaps three bare Python
processes that import what an actor imports (raw), alternating with plexa. plexa runs twice
per round: with its fork server (the default) and with ``PLEXA_FORK_SERVER=0`` (every actor
a fresh interpreter, as before the fork server).

    python benchmarks/lifecycle.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("PLEXA_RUNTIME_DIR", tempfile.mkdtemp(prefix="plexa-bench-"))
os.environ.setdefault("PLEXA_LOG_DIR", tempfile.mkdtemp(prefix="plexa-bench-logs-"))

import plexa
from _report import machine, write_section

PIPE = """
actors:
  a:
    class: "plexa.examples.imaging:FrameSource"
    options: {shape: [64, 64], rate_hz: 0, frames: 1}
  b: {class: "plexa.examples.imaging:RoiTraces"}
  c: {class: "plexa.examples.imaging:RateMonitor"}
connections:
  a.frames: [b.frames]
  b.traces: [c.traces]
"""
PHASES = ("start", "setup", "run", "stop", "quit")
RAW = "import numpy, iceoryx2, zmq, msgspec"


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, this process's CPU s) of ``fn()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def plexa_once(fork_server: bool = True) -> dict[str, tuple[float, float]]:
    os.environ["PLEXA_FORK_SERVER"] = "1" if fork_server else "0"
    nexus = plexa.Nexus(plexa.loads(PIPE, "lifecycle"))
    out = {}
    out["start"] = timed(nexus.start)
    out["setup"] = timed(nexus.setup)
    out["run"] = timed(nexus.run)
    nexus.poll(0.3)
    out["stop"] = timed(nexus.stop)
    report: list[plexa.QuitReport] = []
    out["quit"] = timed(lambda: report.append(nexus.quit()))
    assert report[0].clean, report[0]
    return out


def raw_once() -> tuple[float, float]:
    """(start: 3 processes up with an actor's imports, stop: SIGTERM and reap them)."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"{RAW}; import sys; sys.stdout.write('up\\n'); "
                "sys.stdout.flush(); sys.stdin.read()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdout is not None
        p.stdout.readline()
    up = time.perf_counter() - t0
    t1 = time.perf_counter()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    return up, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}
    execd: dict[str, list[float]] = {p: [] for p in PHASES}
    raw: list[tuple[float, float]] = []
    for _ in range(args.runs):  # alternate: plexa, plexa without its fork server, raw
        for phase, value in plexa_once().items():
            rows[phase].append(value)
        for phase, value in plexa_once(fork_server=False).items():
            execd[phase].append(value[0])
        raw.append(raw_once())

    def med(values: list[float]) -> float:
        return statistics.median(values) * 1000

    lines = [
        "## Lifecycle: an idle 3-actor pipeline, phase by phase",
        "",
        f"Machine: {machine()}. `python benchmarks/lifecycle.py --runs {args.runs}`; "
        "medians of the runs, plexa and a raw floor alternating. *Nexus CPU* is plexa's own "
        "time in the nexus process; wall time also waits for actor processes (imports, "
        "exit) and the scheduler. Raw: three bare `python -c '" + RAW + "'` processes "
        "started in parallel until they print, then SIGTERM and reaped. *Without fork "
        "server*: the same pipeline with `PLEXA_FORK_SERVER=0` (each actor a fresh "
        "interpreter that imports plexa and numpy itself; docs/concepts.md, the fork server).",
        "",
        "| phase | wall ms | nexus CPU ms | without fork server, wall ms | raw wall ms |",
        "|---|---|---|---|---|",
    ]
    raw_cols = {"start": med([r[0] for r in raw]), "quit": med([r[1] for r in raw])}
    for phase in PHASES:
        wall = med([w for w, _ in rows[phase]])
        cpu = med([c for _, c in rows[phase]])
        floor = f"{raw_cols[phase]:.0f}" if phase in raw_cols else "-"
        old = med(execd[phase])
        lines.append(f"| {phase} | {wall:.0f} | {cpu:.1f} | {old:.0f} | {floor} |")
    text = "<!-- lifecycle -->\n" + "\n".join(lines) + "\n<!-- /lifecycle -->"
    print(text)
    write_section(text, "<!-- lifecycle -->", "<!-- /lifecycle -->")


if __name__ == "__main__":
    main()
