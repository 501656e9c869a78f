"""``peers.py --breakdown``: plexa's 200 Hz latency stage by stage, from stamp to handler.

Runs the peers workload's plexa pipeline with the instrumented actors of
:mod:`breakdown_plexa` and turns their marks into stage durations.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import wait_quiet
from benchmarks import _report
from workload import IN_FLIGHT, RATE_HZ, Ctl, Mode, Slot

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = Path(__file__).resolve().parent

BREAK_BEGIN, BREAK_END = "<!-- peers-breakdown -->", "<!-- /peers-breakdown -->"
STAGES = (
    ("send", "stamp → the producer's `loan` block has sent and notified"),
    ("wake-up", "→ the consumer's wake-up wait returns (its event listener)"),
    ("idle return", "→ the runtime's idle step returns"),
    ("safe point", "→ the loop's safe point is done and `take` begins"),
    ("take", "→ iceoryx2 `receive()` returns the sample"),
    ("account", "→ sequence check, `CONSUMED`, producer wake-up, sampled latency"),
    ("decode", "→ the payload's array view is made"),
    ("dispatch", "→ the handler begins"),
)


def breakdown_run(seconds: float, root: Path, n: int) -> Any:
    """One plexa run at 200 Hz with the instrumented processor; returns the stage table
    (one row per frame, one column per stage, ns) of frames after the first second."""
    from breakdown_plexa import MARKS, ROWS

    work = root / f"breakdown{n}"
    work.mkdir(parents=True)
    ctl = Ctl(str(work / "ctl"), create=True)
    ctl[Slot.MODE] = Mode.PACED
    sent = np.memmap(work / "sent", np.int64, "w+", shape=(ROWS,))
    rows = np.memmap(work / "rows", np.int64, "w+", shape=(ROWS, len(MARKS)))
    options = {"ctl": str(work / "ctl")}
    spec = {
        "name": f"peers-breakdown-{os.getpid()}-{n}",
        "actors": {
            "gen": {
                "class": "breakdown_plexa:StampGen",
                "options": {**options, "sent": str(work / "sent")},
            },
            "proc": {
                "class": "breakdown_plexa:MarkProc",
                "options": {**options, "rows": str(work / "rows")},
            },
        },
        "connections": {
            "gen.frames": {"to": ["proc.frames"], "policy": "block", "capacity": IN_FLIGHT}
        },
    }
    path = work / "pipeline.yaml"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PEERS_DIR), str(REPO)]))
    with (work / "peer.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plexa", "run", str(path)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not rows[0, -1] and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(seconds)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
    got = rows[rows[:, -1] > 0]
    got = got[got[:, 1] > got[:, 1].min() + 1_000_000_000] if len(got) else got
    seq, stamp, wait, idle, take, receive, account, decode, handler = got.T
    sent_at = sent[seq % ROWS]
    woke = np.where(wait > 0, wait, idle)
    return np.stack(
        [
            sent_at - stamp,
            woke - sent_at,
            idle - woke,
            take - idle,
            receive - take,
            account - receive,
            decode - account,
            handler - decode,
            handler - stamp,
        ],
        axis=1,
    ), float(np.mean(wait == 0))


def breakdown_section(reps: int, seconds: float, quiet_s: float, log: Callable[[str], None]) -> str:
    """Run the breakdown ``reps`` times and return its BENCHMARKS.md section."""
    root = Path(f"/tmp/plxbreak_{os.getpid()}")
    tables, spins, busy = [], [], []
    try:
        for n in range(reps):
            busy.append(wait_quiet(quiet_s))
            table, spin = breakdown_run(seconds, root, n)
            tables.append(table)
            spins.append(spin)
            log(
                f" breakdown run {n + 1}: {len(table)} frames, total p50 "
                f"{np.median(table[:, -1]) / 1e3:.0f} µs"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = np.concatenate(tables) / 1e3
    lines = [
        "| stage | from the previous mark to | p50 (µs) | p90 (µs) | p99 (µs) | share of p50 sum |",
        "|---|---|---|---|---|---|",
    ]
    p50s = np.median(table[:, :-1], axis=0)
    for i, (name, what) in enumerate(STAGES):
        p50, p90, p99 = np.percentile(table[:, i], [50, 90, 99])
        lines.append(
            f"| {name} | {what} | {p50:.1f} | {p90:.1f} | {p99:.1f} "
            f"| {100 * p50s[i] / p50s.sum():.0f} % |"
        )
    p50, p90, p99 = np.percentile(table[:, -1], [50, 90, 99])
    lines.append(f"| **total** | stamp → handler | **{p50:.0f}** | {p90:.0f} | {p99:.0f} | |")
    date = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = "\n".join(
        [
            f"Measured {date} on {_report.machine()}.",
            "",
            "\n".join(lines),
            "",
            f"`python benchmarks/peers.py --breakdown` ({reps} runs of {seconds:g} s, "
            f"{len(table)} frames after each run's first second, pooled): the peers "
            f"workload's plexa pipeline at {RATE_HZ:g} Hz (`loan`, `block` link of "
            f"{IN_FLIGHT}, metrics on), with `benchmarks/peers/breakdown_plexa.py` marking "
            "`time.monotonic_ns()` in the processor's process between the steps of the "
            "receive path (nothing in `src/` changes; the marks add about 1 µs). Each "
            "stage is the time from the previous mark; percentiles are per stage, so they "
            "do not add up except at p50 roughly. "
            f"{100 * statistics.median(spins):.0f} % of the frames arrived while the "
            "consumer was still spinning before its wait (their wake-up stage is 0). "
            f"The machine was shared: {min(busy):.0f}-{max(busy):.0f} % of all CPUs were "
            "busy just before the runs (other people's tests), which shows in the wake-up "
            "and in every p99. "
            'This is the "before" breakdown of issue 16: the receive path at the commit '
            "named above.",
        ]
    )
    return (
        f"{BREAK_BEGIN}\n## Peers: where plexa's latency goes (stamp to handler)\n\n"
        f"{body}\n{BREAK_END}"
    )
