"""plexa against its peers: the same two-process workload on every framework, side by side.

``python benchmarks/peers.py [--quick] [--peers a,b] [--reps N]`` runs, for each peer, a
generator process that sends 512x512 uint16 frames (sequence number and send time stamped
into the first 16 bytes) and a processor process that computes ``frame.mean()`` of each
(:mod:`benchmarks.peers.workload`, the same code in every peer). Each run of a peer is a
fresh launch, measured from outside:

* **start**: from launching the peer's command to the first frame handled;
* **throughput**: frames handled per second, lossless, at most 8 in flight;
* **latency**: one-way p50/p99 at 200 Hz, send stamp to the processor's handler;
* **CPU**: of all the peer's processes, per frame at full speed and in % of a core at 200 Hz;
* **peak PSS**: the largest sum of PSS over the peer's processes during the run;
* **drops**: frames sent and never handled, or missing from the numbering;
* **stop**: from Ctrl-C (SIGINT to the peer's process group) to the last process gone;
* **leftovers**: processes still alive after 20 s, and /dev/shm entries the peer's
  processes had open that remain.

Runs alternate between peers (the order rotates each repetition), and the table shows
medians and the median of the per-repetition ratios to raw iceoryx2 and to the shared-memory
ring. Every peer but plexa and the two raw baselines runs in a virtual environment of its
own that this script creates and reuses under ``~/.cache/plexa-bench/venvs`` with pinned
versions; a peer that cannot be installed is reported as such. The full run writes its table
into BENCHMARKS.md between the ``<!-- peers -->`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO / "benchmarks" / "peers"
for _p in (REPO, PEERS_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from _breakdown import BREAK_BEGIN, BREAK_END, breakdown_section  # noqa: E402
from _harness import QUIET_PCT, Watch, venv_python, wait_quiet  # noqa: E402
from benchmarks import _report  # noqa: E402
from workload import IN_FLIGHT, MAX_SAMPLES, RATE_HZ, Config, Ctl, Mode, Slot  # noqa: E402

BEGIN, END = "<!-- peers -->", "<!-- /peers -->"
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class Peer:
    """One framework in the comparison."""

    name: str
    label: str
    script: str
    """The peer's launcher in benchmarks/peers/ (run with the peer's python)."""
    pins: tuple[str, ...] = ()
    """Requirements of its own virtual environment (none: this interpreter's)."""
    note: str = ""
    """What the peer needed to be lossless, or other help (shown under the table)."""
    base: str = ""
    """The Python its environment is made with, e.g. ``3.10`` (default: this one)."""


PEERS = (
    Peer("shm", "raw shared-memory ring + pipe wake-up (the limit)", "peer_shm.py"),
    Peer(
        "iceoryx2",
        "raw iceoryx2",
        "peer_iceoryx2.py",
        note="`RetryUntilDelivered` and a buffer of 8, plus a 0.3 s pause before the first "
        "send, without which it lost 6 frames in one run of four",
    ),
    Peer("plexa", "**plexa** (`loan`, `block` link)", "peer_plexa.py"),
    Peer(
        "ezmsg",
        "ezmsg 3.9",
        "peer_ezmsg.py",
        pins=("ezmsg==3.9.0", "numpy==2.4.6"),
        note="lossless by its default backpressure; `num_buffers=8` on the output stream "
        "keeps 8 frames in flight at most",
    ),
)
PEERS += (
    Peer(
        "dora",
        "dora-rs 1.1 (`queue_policy: backpressure`)",
        "peer_dora.py",
        pins=("dora-rs==1.1.0", "dora-rs-cli==1.1.0", "pyarrow==26.0.1", "numpy==2.4.6"),
        note="`queue_policy: backpressure` on the input makes it lossless but does not bound "
        "the frames in flight; the processor answers each frame with a `done` message and the "
        "generator waits for answers when 8 are outstanding",
    ),
    Peer(
        "improv",
        "improv 0.2.2",
        "peer_improv.py",
        pins=("improv==0.2.2", "numpy==1.26.4"),
        note="its links are unbounded queues; the processor answers each frame on a `done` "
        "link and the generator waits for answers when 8 are outstanding",
        base="3.10",
    ),
    Peer(
        "ray",
        "Ray 2.60",
        "peer_ray.py",
        pins=("ray==2.60.0", "numpy==2.4.6"),
        note="calls are queued, never dropped; the generator keeps 8 calls pending at most "
        "with `ray.wait`, as Ray's docs advise",
    ),
)
BASELINES = ("iceoryx2", "shm")


@dataclass(frozen=True)
class Plan:
    """How long each phase of a run lasts, and how many runs."""

    reps: int
    warmup_s: float
    fast_s: float
    paced_s: float
    settle_s: float
    quiet_s: float
    """Longest wait for a quiet machine before each run."""


FULL = Plan(reps=4, warmup_s=1.0, fast_s=3.0, paced_s=4.0, settle_s=0.3, quiet_s=3.0)
QUICK = Plan(reps=1, warmup_s=0.5, fast_s=1.0, paced_s=1.5, settle_s=0.2, quiet_s=0.5)


@dataclass
class Result:
    """What one run of one peer measured."""

    start_s: float = float("nan")
    start_cpu_s: float = float("nan")
    """CPU time the peer's processes had used when its first frame was handled (s): what
    starting costs, which a busy machine stretches in wall time but hardly changes."""
    fps: float = float("nan")
    fast_cpu_us: float = float("nan")
    """CPU time of all the peer's processes per frame at full speed (µs)."""
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    paced_cpu_pct: float = float("nan")
    paced_hz: float = float("nan")
    """Frames per second the processor handled while 200 Hz were asked for."""
    """CPU of all the peer's processes at 200 Hz, % of one core."""
    pss_mb: float = float("nan")
    stop_s: float = float("nan")
    drops: int = 0
    procs: int = 0
    """Processes the peer ran (most at once)."""
    left_procs: list[str] = field(default_factory=list)
    left_shm: list[str] = field(default_factory=list)
    error: str = ""
    busy_pct: float = 0.0
    """Machine-wide CPU % just before the run (other people's work on a shared machine)."""


# ----- one run ---------------------------------------------------------------------------------


def run_peer(peer: Peer, python: str, plan: Plan, root: Path, n: int) -> Result:
    """Launch ``peer``, measure it, quit it, and check what it left behind."""
    work = root / f"{peer.name}{n}"
    work.mkdir(parents=True)
    ctl_path = work / "ctl"
    ctl = Ctl(str(ctl_path), create=True)
    cfg = Config(ctl=str(ctl_path), workdir=str(work))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PEERS_DIR), str(REPO)]))
    env.pop("PYTHONSTARTUP", None)
    res = Result(busy_pct=wait_quiet(plan.quiet_s))
    log_file = (work / "peer.log").open("wb")
    t_launch = time.monotonic_ns()
    proc = subprocess.Popen(
        [python, str(PEERS_DIR / peer.script), cfg.to_json()],
        cwd=work,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    watch = Watch(proc.pid)
    try:
        _measure(ctl, proc, watch, plan, res, t_launch)
    except Exception as exc:  # reported in the table, the run goes on with the next peer
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        _quit(proc, watch, res)
        log_file.close()
    if res.error:
        lines = (work / "peer.log").read_text(errors="replace").strip().splitlines()
        errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
        tail = (errors or lines)[-2:]
        res.error += " | " + " / ".join(tail)
    return res


def _measure(
    ctl: Ctl, proc: subprocess.Popen[bytes], watch: Watch, plan: Plan, res: Result, t0: int
) -> None:
    deadline = time.monotonic() + 120
    while not ctl[Slot.FIRST_NS]:
        if proc.poll() is not None:
            raise RuntimeError(f"the peer exited with {proc.returncode} before its first frame")
        if time.monotonic() > deadline:
            raise RuntimeError("no frame handled within 120 s")
        time.sleep(0.001)
    res.start_s = (ctl[Slot.FIRST_NS] - t0) / 1e9
    res.start_cpu_s = watch.cpu()
    time.sleep(plan.warmup_s)
    c0, n0, w0 = watch.cpu(), ctl[Slot.HANDLED], time.monotonic()
    time.sleep(plan.fast_s)
    c1, n1, w1 = watch.cpu(), ctl[Slot.HANDLED], time.monotonic()
    res.fps = (n1 - n0) / (w1 - w0)
    res.fast_cpu_us = 1e6 * (c1 - c0) / max(1, n1 - n0)
    ctl[Slot.MODE] = Mode.PAUSE
    _drain(ctl)
    ctl[Slot.MODE] = Mode.PACED
    time.sleep(plan.settle_s)
    s0, c0, w0 = time.monotonic_ns(), watch.cpu(), time.monotonic()
    time.sleep(plan.paced_s)
    s1, c1, w1 = time.monotonic_ns(), watch.cpu(), time.monotonic()
    res.paced_cpu_pct = 100 * (c1 - c0) / (w1 - w0)
    ctl[Slot.MODE] = Mode.PAUSE
    _drain(ctl)
    count = ctl[Slot.SAMPLES]
    rows = ctl.rows[: min(count, MAX_SAMPLES)]
    kept = rows[(rows[:, 0] >= s0) & (rows[:, 0] < s1), 1] / 1e3
    if len(kept) < 10:
        raise RuntimeError(f"only {len(kept)} latency samples at {RATE_HZ:g} Hz")
    res.p50_us, res.p99_us = (float(x) for x in np.percentile(kept, [50, 99]))
    res.paced_hz = len(kept) / ((s1 - s0) / 1e9)
    # Sent and never handled (after the drain); LOST, the gaps in the numbering, says the same
    # from the other end (it also catches a frame handled twice in place of another).
    res.drops = max(ctl[Slot.SENT] - ctl[Slot.HANDLED], ctl[Slot.LOST])


def _drain(ctl: Ctl, timeout: float = 5.0) -> None:
    """Wait until every frame sent has been handled (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while ctl[Slot.SENT] > ctl[Slot.HANDLED] + ctl[Slot.LOST] and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)  # a frame sent just as the pause was read


def _quit(proc: subprocess.Popen[bytes], watch: Watch, res: Result) -> None:
    """Ctrl-C the peer, time it until its last process is gone, and kill what remains."""
    watch.sample()
    watch.close()
    t_quit = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
    deadline = t_quit + 20.0
    while True:
        proc.poll()
        left = watch.alive()
        if not left:
            res.stop_s = time.monotonic() - t_quit
            break
        if time.monotonic() > deadline:
            res.left_procs = [f"{p.pid} {_name(p)}" for p in left]
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            proc.wait(5)
            break
        time.sleep(0.002)
    res.pss_mb = watch.peak_pss / 2**20
    res.procs = watch.most
    res.left_shm = sorted(p for p in watch.shm if Path(p).exists())


def _name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:80] or proc.name()
    except psutil.Error:
        return "?"


# ----- the table -------------------------------------------------------------------------------


def _med(values: list[float]) -> float:
    good = [v for v in values if v == v]
    return statistics.median(good) if good else float("nan")


def _range(values: list[float], fmt: str) -> str:
    good = sorted(v for v in values if v == v)
    if not good:
        return "—"
    mid = format(statistics.median(good), fmt)
    if len(good) < 3:
        return mid
    return f"{mid} ({format(good[0], fmt)}-{format(good[-1], fmt)})"


def _ratio(runs: dict[str, list[Result]], peer: str, base: str, attr: str) -> str:
    pairs = [
        getattr(a, attr) / getattr(b, attr)
        for a, b in zip(runs[peer], runs.get(base, []), strict=False)
        if not a.error and not b.error and getattr(b, attr) > 0
    ]
    return f"{statistics.median(pairs):.2f}x" if pairs else "—"


def render(runs: dict[str, list[Result]], missing: dict[str, str]) -> str:
    """The result table in Markdown: medians (range) and per-run ratios."""
    lines = [
        "| peer | frames/s | vs iceoryx2 / ring | CPU µs/frame | 200 Hz p50 / p99 (µs) "
        "| p50 vs iceoryx2 / ring | frames/s at 200 Hz | CPU at 200 Hz | start / stop (s) "
        "| CPU to start (s) "
        "| peak PSS (MB) | procs | drops | leftovers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer in PEERS:
        if peer.name not in runs and peer.name not in missing:
            continue
        if peer.name in missing:
            lines.append(f"| {peer.label} | not installed: {missing[peer.name]} |" + " |" * 12)
            continue
        rs = [r for r in runs.get(peer.name, []) if not r.error]
        if not rs:
            lines.append(f"| {peer.label} | failed |" + " |" * 12)
            continue
        fps = _range([r.fps for r in rs], ",.0f")
        thr = " / ".join(_ratio(runs, peer.name, b, "fps") for b in BASELINES)
        lat = " / ".join(_ratio(runs, peer.name, b, "p50_us") for b in BASELINES)
        left = sum(len(r.left_procs) for r in rs), sum(len(r.left_shm) for r in rs)
        lines.append(
            f"| {peer.label} | {fps} | {thr} | {_med([r.fast_cpu_us for r in rs]):.0f} "
            f"| {_range([r.p50_us for r in rs], '.0f')} / {_range([r.p99_us for r in rs], '.0f')} "
            f"| {lat} | {_med([r.paced_hz for r in rs]):.0f} "
            f"| {_med([r.paced_cpu_pct for r in rs]):.0f} % "
            f"| {_med([r.start_s for r in rs]):.2f} / {_med([r.stop_s for r in rs]):.2f} "
            f"| {_med([r.start_cpu_s for r in rs]):.2f} "
            f"| {_range([r.pss_mb for r in rs], '.0f')} | {max(r.procs for r in rs)} "
            f"| {sum(r.drops for r in rs)} "
            f"| {'none' if left == (0, 0) else f'{left[0]} procs, {left[1]} shm'} |"
        )
    return "\n".join(lines)


def section(
    runs: dict[str, list[Result]], missing: dict[str, str], plan: Plan, elapsed: float
) -> str:
    """The BENCHMARKS.md section between the peers markers."""
    date = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    notes = [
        f"Measured {date} on {_report.machine()}.",
        "",
        render(runs, missing),
        "",
        f"`python benchmarks/peers.py` ({elapsed:.0f} s, {plan.reps} runs of each peer, "
        "alternating, the order rotated each repetition; medians with the range in "
        "brackets; ratios are medians of the per-repetition ratios, throughput as "
        "peer/baseline (higher is better), latency as peer/baseline (lower is better)). "
        "The workload, identical for every peer (`benchmarks/peers/workload.py`): a generator "
        "process copies a 512x512 uint16 source frame into each message and stamps a "
        "sequence number and `time.monotonic_ns()` into its first 16 bytes; a processor "
        "process computes `frame.mean()`. Each run is a fresh launch of the peer's own "
        f"command: after {plan.warmup_s:g} s of warm-up, frames handled over {plan.fast_s:g} s "
        f"at full speed (lossless, at most {IN_FLIGHT} in flight), then {plan.paced_s:g} s at "
        f"{RATE_HZ:g} Hz (latency from the stamp to the processor's handler, before its "
        "`mean()`). CPU is user + system time of all the peer's processes (per frame at full "
        "speed, % of one core at 200 Hz). Start: from launching the peer's command to the "
        "first frame handled (and the CPU time its processes had used by then, which a "
        "busy machine stretches less than the wall time); stop: from SIGINT to its process "
        "group (what Ctrl-C in a "
        "terminal does) to the last of its processes gone. "
        "PSS: the largest sum over its processes, sampled every 0.5 s. Drops: sent but never "
        "handled, or missing from the sequence numbers. Leftovers: processes still alive 20 s "
        "after SIGINT, /dev/shm entries its processes had mapped that still exist.",
        "",
        "How each peer is written (`benchmarks/peers/peer_*.py`, each as its own docs show a "
        "user):",
        "",
    ]
    for peer in PEERS:
        doc = _description(PEERS_DIR / peer.script)
        extra = f" *Lossless, 8 in flight:* {peer.note}." if peer.note else ""
        notes.append(f"* **{peer.name}**: {doc}{extra}")
    problems = [
        f"{name} run {i + 1}: {r.error}"
        for name, rs in runs.items()
        for i, r in enumerate(rs)
        if r.error
    ]
    problems += [
        f"{name} run {i + 1}: left {', '.join(r.left_procs + r.left_shm)}"
        for name, rs in runs.items()
        for i, r in enumerate(rs)
        if r.left_procs or r.left_shm
    ]
    busy = [r.busy_pct for rs in runs.values() for r in rs if r.busy_pct > QUIET_PCT]
    if busy:
        problems.insert(
            0,
            f"{len(busy)} runs started while other work kept the machine busy (up to "
            f"{max(busy):.0f} % of all CPUs after waiting up to {plan.quiet_s:g} s for quiet)",
        )
    if problems:
        notes += ["", "Problems seen in this run:", ""] + [f"* {p}" for p in problems]
    body = "\n".join(notes)
    return f"{BEGIN}\n## Peers: plexa and other frameworks on one workload\n\n{body}\n{END}"


def _description(path: Path) -> str:
    """The module docstring of a peer's script, as one Markdown paragraph."""
    text = path.read_text()
    doc = text.split('"""')[1] if '"""' in text else ""
    doc = doc.replace("``", "`").replace("IN_FLIGHT", str(IN_FLIGHT))
    return " ".join(doc.split())


# ----- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns 1 if a peer that is installed failed every run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short run of each peer")
    parser.add_argument("--reps", type=int, help="runs of each peer")
    parser.add_argument("--peers", help="comma-separated peer names (default: all)")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md even if --quick")
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument(
        "--breakdown", action="store_true", help="only the per-stage breakdown of plexa's latency"
    )
    args = parser.parse_args(argv)
    # Started in the background, this process may ignore SIGINT, and so would every peer it
    # launches (an ignored signal stays ignored across exec): Ctrl-C would reach nobody.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    write = (not args.quick or args.write) and not args.no_write
    if args.breakdown:
        t0 = time.perf_counter()
        seconds = 4.0 if args.quick else 15.0
        text = breakdown_section(
            plan.reps,
            seconds,
            plan.quiet_s,
            lambda m: print(f"[{time.perf_counter() - t0:6.1f} s]{m}"),
        )
        print(text)
        if write:
            _report.write_section(text, BREAK_BEGIN, BREAK_END)
        return 0
    chosen = [p for p in PEERS if not args.peers or p.name in args.peers.split(",")]
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s]{text}", flush=True)

    pythons: dict[str, str] = {}
    missing: dict[str, str] = {}
    for peer in chosen:
        python, why = venv_python(peer.name, peer.pins, peer.base, log)
        if python:
            pythons[peer.name] = python
        else:
            missing[peer.name] = why
            log(f" {peer.name}: cannot be installed: {why}")
    root = Path(f"/tmp/plxpeers_{os.getpid()}")
    runs: dict[str, list[Result]] = {name: [] for name in pythons}
    order = [p for p in chosen if p.name in pythons]
    try:
        for rep in range(plan.reps):
            shift = rep % len(order) if order else 0
            for peer in order[shift:] + order[:shift]:
                res = run_peer(peer, pythons[peer.name], plan, root, rep)
                runs[peer.name].append(res)
                if res.error:
                    log(f" {peer.name} run {rep + 1}: FAILED {res.error}")
                    continue
                left = res.left_procs + res.left_shm
                log(
                    f" {peer.name} run {rep + 1}: {res.fps:,.0f} frames/s "
                    f"({res.fast_cpu_us:.0f} µs CPU each), p50 {res.p50_us:.0f} µs "
                    f"p99 {res.p99_us:.0f} µs ({res.paced_hz:.0f}/s, "
                    f"{res.paced_cpu_pct:.0f} % CPU), start "
                    f"{res.start_s:.2f} s ({res.start_cpu_s:.2f} s CPU), "
                    f"stop {res.stop_s:.2f} s, PSS {res.pss_mb:.0f} MB "
                    f"in {res.procs} procs, drops {res.drops}" + (f", LEFT {left}" if left else "")
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print()
    print(render({k: v for k, v in runs.items()}, missing))
    print(f"\n{_report.machine()}; {elapsed:.0f} s")
    if write:
        _report.write_section(section(runs, missing, plan, elapsed), BEGIN, END)
        print(f"wrote {_report.BENCHMARKS_MD}")
    failed = [name for name, rs in runs.items() if rs and all(r.error for r in rs)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
