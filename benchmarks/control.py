"""Control benchmark: client round trips to a running ``plexa server``, and what metrics cost.

``python benchmarks/control.py [--quick]`` measures:

1. the round trip of ``ping`` and ``status`` requests (``Client.request``, zmq over TCP on
   127.0.0.1) to a ``plexa server examples/imaging.yaml`` subprocess whose pipeline is running
   (a 512x512 camera at 100 Hz → ROI traces → a rate monitor): p50 and p99 over 1000 requests
   of each, after 100 of warm-up; requests of both kinds alternate in blocks of 50;
2. the time ``Nexus.status()`` itself takes inside the nexus (what a ``status`` request costs
   the nexus's loop), on the 2-actor pipeline of 3.;
3. what ``settings.metrics`` costs in throughput: a ``Producer`` → ``Consumer`` pipeline
   (``benchmarks.actors``, lossless ``block`` link) sending as fast as it can, 100-byte
   messages (``put``) and 512 KB frames (``loan``). Each run starts one pipeline with
   ``metrics: true`` and one with ``metrics: false`` (fresh processes), pauses both, then
   lets them run in turn, 0.5 s at a time, until each has run 3 s (after 1 s of warm-up), so
   both see the same machine; which one starts first alternates between runs. A setting's
   throughput is the link's ``received`` count over its slices (``Nexus.status()``); 3 runs,
   and the cost is ``1 - median(on) / median(off)``. Two more runs with metrics off in both
   pipelines (an A/A check) show the method's own noise.

``--quick`` does 300 requests and two runs of each setting with 1 s windows, and no A/A
check. The table is printed and written into ``BENCHMARKS.md`` between the
``<!-- control -->`` markers (``--no-write`` to skip; ``--quick`` writes only with ``--write``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # actor classes are "benchmarks.actors:..."; the nexus
    # forwards sys.path to the actor processes

import psutil  # noqa: E402
from benchmarks import _report  # noqa: E402

import plexa  # noqa: E402

BENCHMARKS_MD = _report.BENCHMARKS_MD
BEGIN, END = "<!-- control -->", "<!-- /control -->"
IMAGING = REPO / "examples" / "imaging.yaml"
LINK = "producer.out->consumer.inp"
RTT_TARGET_US = 1000.0
COST_TARGET = 0.05
QUIET_PCT = 15.0
"""A machine busier than this (% of one core) is not quiet: wait before measuring."""
DISTURBED_PCT = 25.0
"""A throughput run during which others took more than this (% of one core) is run again."""


@dataclass(frozen=True)
class Plan:
    """How many requests and runs."""

    requests: int
    warm_requests: int
    block: int
    reps: int
    warm_s: float
    window_s: float
    slice_s: float
    """Each setting's window is made of slices this long, alternating with the other's."""
    aa_runs: int
    """Runs with metrics off in both pipelines: the method's own noise."""
    status_calls: int
    quiet_s: float
    """Longest wait for a quiet machine before each measurement."""
    redos: int
    """Throughput runs that may be run again because others took the CPU."""


FULL = Plan(
    requests=1000,
    warm_requests=100,
    block=50,
    reps=3,
    warm_s=1.0,
    window_s=3.0,
    slice_s=0.5,
    aa_runs=2,
    status_calls=1000,
    quiet_s=20.0,
    redos=10,
)
QUICK = Plan(
    requests=300,
    warm_requests=50,
    block=50,
    reps=2,
    warm_s=0.5,
    window_s=1.0,
    slice_s=0.5,
    aa_runs=0,
    status_calls=300,
    quiet_s=2.0,
    redos=1,
)


@dataclass(frozen=True)
class Flow:
    """One kind of traffic for the metrics runs."""

    label: str
    shape: tuple[int, ...]
    dtype: str
    mode: str
    capacity: int


FLOWS = (
    Flow("100 B messages", (100,), "uint8", "put", 8),
    Flow("512 KB frames", (512, 512), "uint16", "loan", 4),
)


@dataclass
class Notes:
    """What the table's footnote reports about the run."""

    others_pct: list[float] = field(default_factory=list)
    """CPU other processes took during each measurement kept, in % of one core."""
    redone: int = 0
    """Throughput runs measured again because other processes took the CPU meanwhile."""
    redo_budget: int = 0
    loud: int = 0
    """Measurements started although the machine was not quiet."""
    problems: list[str] = field(default_factory=list)
    runs: dict[str, dict[bool, list[float]]] = field(default_factory=dict)
    """Per flow, per metrics setting, the throughput of each run (msg/s)."""


class CpuWatch:
    """CPU that processes other than ``pids`` (and this one) took over a window, % of a core.

    The machine is shared; a measurement others took a core from is worth knowing about.
    """

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids] + [psutil.Process()]
        self.t0 = time.perf_counter()
        self.busy0 = _busy()
        self.mine0 = self._mine()

    def _mine(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def others(self) -> float:
        wall = time.perf_counter() - self.t0
        spent = (_busy() - self.busy0) - (self._mine() - self.mine0)
        return max(0.0, 100.0 * spent / wall) if wall > 0 else 0.0


def wait_quiet(limit_s: float) -> float:
    """Wait (up to ``limit_s``) until the machine is nearly idle; returns its last busy %.

    Busy is machine-wide CPU in % of one core over 0.5 s, while this benchmark is idle.
    """
    deadline = time.monotonic() + limit_s
    while True:
        t0, b0 = time.perf_counter(), _busy()
        time.sleep(0.5)
        busy = 100.0 * (_busy() - b0) / (time.perf_counter() - t0)
        if busy < QUIET_PCT or time.monotonic() >= deadline:
            return busy


def _busy() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def _pcts(samples_ns: list[int]) -> tuple[float, float]:
    """p50 and p99 in µs."""
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1e3
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e3
    return p50, p99


# ----- 1. round trips to a plexa server ----------------------------------------------------------


@contextlib.contextmanager
def served(name: str, log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``plexa server examples/imaging.yaml --name NAME`` in a subprocess, quit at the end."""
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plexa", "server", str(IMAGING), "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"plexa server exited with {proc.returncode}: see {log_file}")
            with contextlib.suppress(plexa.PlexaError), plexa.connect(name, timeout=2.0) as c:
                status = c.status()
                if status["run"]["state"] == "running" and not status["run"]["busy"]:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"plexa server did not come up within 60 s: see {log_file}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            try:
                with plexa.connect(name, timeout=5.0) as client:
                    client.request("quit")
                proc.wait(60)
            except Exception:
                proc.terminate()
                proc.wait(30)


def round_trips(plan: Plan, notes: Notes, log: Callable[[str], None]) -> dict[str, list[int]]:
    """Round-trip times (ns) of ``ping`` and ``status`` to a running server."""
    name = f"bench-control-{os.getpid()}"
    samples: dict[str, list[int]] = {"ping": [], "status": []}
    with tempfile.TemporaryDirectory(prefix="plxbench-control-") as tmp:
        log_file = Path(tmp) / "server.log"
        with served(name, log_file) as proc, plexa.connect(name, timeout=5.0) as client:
            pids = [proc.pid] + [
                int(a["pid"]) for a in client.status()["actors"].values() if a["pid"]
            ]
            for _ in range(plan.warm_requests):
                client.request("ping")
                client.request("status")
            watch = CpuWatch(pids)
            perf = time.perf_counter_ns
            while len(samples["ping"]) < plan.requests:
                for command in ("ping", "status"):
                    got = samples[command]
                    for _ in range(plan.block):
                        t0 = perf()
                        client.request(command)
                        got.append(perf() - t0)
            notes.others_pct.append(watch.others())
            status = client.status()
            if status["run"]["state"] != "running":
                notes.problems.append(f"the served run was {status['run']['state']}")
            client.request("quit")
            code = proc.wait(60)
        if code != 0:
            notes.problems.append(
                f"plexa server exited with {code}: {log_file.read_text()[-500:]!r}"
            )
    for command, got in samples.items():
        p50, p99 = _pcts(got)
        log(f" {command}: p50 {p50:.0f} µs, p99 {p99:.0f} µs over {len(got)} requests")
    return samples


# ----- 2., 3. the metrics cost ----------------------------------------------------------------


def pipeline(flow: Flow, metrics: bool) -> str:
    """A producer → consumer pipeline (JSON is YAML)."""
    spec = {
        "name": "bench-control",
        "settings": {"metrics": metrics, "store_size": "16MiB"},
        "actors": {
            "producer": {
                "class": "benchmarks.actors:Producer",
                "options": {"shape": list(flow.shape), "dtype": flow.dtype, "mode": flow.mode},
            },
            "consumer": {"class": "benchmarks.actors:Consumer", "options": {"work": "ends"}},
        },
        "connections": {
            "producer.out": {"to": ["consumer.inp"], "policy": "block", "capacity": flow.capacity}
        },
    }
    return json.dumps(spec)


def _received(nx: plexa.Nexus) -> tuple[float, int]:
    t0 = time.perf_counter()
    received = int(nx.status()["links"][LINK]["received"])
    return (t0 + time.perf_counter()) / 2, received


@dataclass(frozen=True)
class Sample:
    """One throughput run."""

    rate: float
    """Messages received per second."""
    cpu_us: float
    """CPU time (user + system) the two actor processes spent per message, in µs."""
    others: float
    """CPU other processes took meanwhile, % of one core."""


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


@dataclass
class Side:
    """One of the two pipelines of a paired run, and what its slices counted."""

    nx: plexa.Nexus
    metrics: bool
    procs: list[psutil.Process]
    received: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0

    def sample(self, others: float) -> Sample:
        return Sample(
            self.received / self.seconds, 1e6 * self.cpu_s / max(self.received, 1), others
        )


def _started(stack: contextlib.ExitStack, flow: Flow, metrics: bool) -> Side:
    spec = plexa.loads(pipeline(flow, metrics), source="benchmarks/control.py")
    nx = stack.enter_context(plexa.Nexus(spec))
    nx.start()
    nx.setup()
    nx.run()
    nx.pause()
    pids = [int(a["pid"]) for a in nx.status()["actors"].values() if a["pid"]]
    return Side(nx, metrics, [psutil.Process(pid) for pid in pids])


def _slice(side: Side, seconds: float) -> None:
    """Let ``side`` run for ``seconds`` and count what its link received meanwhile."""
    nx = side.nx
    nx.resume()
    c0 = _cpu_s(side.procs)
    t0, n0 = _received(nx)
    nx.poll(seconds)
    t1, n1 = _received(nx)
    c1 = _cpu_s(side.procs)
    nx.pause()
    side.received += n1 - n0
    side.seconds += t1 - t0
    side.cpu_s += c1 - c0


def paired(
    flow: Flow,
    plan: Plan,
    notes: Notes,
    status_ns: list[int] | None = None,
    on_first: bool = True,
    same: bool = False,
) -> tuple[Sample, Sample, float]:
    """One run of each setting, in fresh processes, measured in alternating slices.

    Both pipelines are started and paused; then each in turn runs for a slice while the
    other stays paused, ``window_s / slice_s`` slices each, so that both see the same
    machine; ``on_first`` says which is started (and runs) first. Returns the samples with
    metrics on and off, and the CPU others took (% of a core). Fills ``status_ns`` (from the
    metrics-on pipeline) if given. ``same`` turns metrics off in both (an A/A check: what
    the method reports when there is no difference).
    """
    with contextlib.ExitStack() as stack:
        first = (True, False) if on_first else (False, True)
        sides = {m: _started(stack, flow, m and not same) for m in first}
        for side in sides.values():
            _slice(side, plan.warm_s)
            side.received = side.seconds = side.cpu_s = 0
        watch = CpuWatch([p.pid for side in sides.values() for p in side.procs])
        slices = max(1, round(plan.window_s / plan.slice_s))
        for i in range(slices):
            for m in first if i % 2 == 0 else first[::-1]:
                _slice(sides[m], plan.slice_s)
        others = watch.others()
        for side in sides.values():
            nx, metrics = side.nx, side.metrics
            nx.resume()
            timed = nx.status()["links"][LINK]["latency_p50_us"] is not None
            if timed != metrics:
                notes.problems.append(f"metrics: {metrics}, but link latency measured: {timed}")
            if status_ns is not None and metrics:
                perf = time.perf_counter_ns
                for _ in range(plan.status_calls):
                    s0 = perf()
                    nx.status()
                    status_ns.append(perf() - s0)
                    nx.poll(0.0005)
            nx.stop()
            link = nx.status()["links"][LINK]
            report = nx.quit()
            if link["lost"] or link["sent"] != link["received"] + link["dropped"]:
                notes.problems.append(f"{flow.label}, metrics {metrics}: link counts {link}")
            if report.failures or report.terminated or report.killed:
                notes.problems.append(
                    f"{flow.label}, metrics {metrics}: failures "
                    f"{[str(f) for f in report.failures]}, SIGTERM {list(report.terminated)}, "
                    f"SIGKILL {list(report.killed)}"
                )
    return sides[True].sample(others), sides[False].sample(others), others


def measured(
    flow: Flow,
    plan: Plan,
    notes: Notes,
    status_ns: list[int] | None,
    on_first: bool,
    same: bool = False,
) -> tuple[Sample, Sample]:
    """One paired run on a quiet machine, run again (within the budget) if disturbed."""
    while True:
        if wait_quiet(plan.quiet_s) >= QUIET_PCT:
            notes.loud += 1
        on, off, others = paired(flow, plan, notes, status_ns, on_first, same)
        if others <= DISTURBED_PCT or notes.redo_budget <= 0:
            notes.others_pct.append(others)
            return on, off
        notes.redo_budget -= 1
        notes.redone += 1
        if status_ns is not None:
            status_ns.clear()


@dataclass(frozen=True)
class Cost:
    """Medians of the runs with metrics on and off."""

    rate_on: float
    rate_off: float
    cpu_on: float
    cpu_off: float
    aa: list[float] = field(default_factory=list)
    """A/A checks: ``1 - a / b`` of two pipelines that both have metrics off."""


def metrics_cost(
    plan: Plan, notes: Notes, log: Callable[[str], None]
) -> tuple[dict[str, Cost], list[int]]:
    """Per flow, the medians with metrics on and off; and Nexus.status() times."""
    result: dict[str, Cost] = {}
    status_ns: list[int] = []
    for flow in FLOWS:
        runs: dict[bool, list[Sample]] = {True: [], False: []}
        for rep in range(plan.reps):
            collect = status_ns if flow is FLOWS[0] and not status_ns else None
            on, off = measured(flow, plan, notes, collect, rep % 2 == 0)
            runs[True].append(on)
            runs[False].append(off)
            log(
                f" {flow.label}: on {on.rate:,.0f} msg/s, {on.cpu_us:.1f} µs CPU/msg; off "
                f"{off.rate:,.0f} msg/s, {off.cpu_us:.1f} µs CPU/msg; others {on.others:.0f} %"
            )
        aa = []
        for rep in range(plan.aa_runs):
            a, b = measured(flow, plan, notes, None, rep % 2 == 0, same=True)
            aa.append(1.0 - a.rate / b.rate)
            log(f" {flow.label}: A/A check (both off) {a.rate:,.0f} vs {b.rate:,.0f} msg/s")
        notes.runs[flow.label] = {k: [s.rate for s in v] for k, v in runs.items()}
        result[flow.label] = Cost(
            statistics.median(s.rate for s in runs[True]),
            statistics.median(s.rate for s in runs[False]),
            statistics.median(s.cpu_us for s in runs[True]),
            statistics.median(s.cpu_us for s in runs[False]),
            aa,
        )
    return result, status_ns


# ----- the table --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    measure: str
    value: str
    target: str
    met: bool | None


def _us(value: float) -> str:
    return f"{value:.0f} µs" if value < 1000 else f"{value / 1e3:.2f} ms"


def rows_of(rtt: dict[str, list[int]], costs: dict[str, Cost], status_ns: list[int]) -> list[Row]:
    """The table's rows."""
    rows: list[Row] = []
    for command in ("ping", "status"):
        p50, p99 = _pcts(rtt[command])
        rows.append(Row(f"`{command}` round trip, p50", _us(p50), "≤ 1 ms", p50 <= RTT_TARGET_US))
        rows.append(Row(f"`{command}` round trip, p99", _us(p99), "—", None))
    if status_ns:
        p50, p99 = _pcts(status_ns)
        rows.append(
            Row("`Nexus.status()` in the nexus, p50 / p99", f"{_us(p50)} / {_us(p99)}", "—", None)
        )
    for label, c in costs.items():
        cost = 1.0 - c.rate_on / c.rate_off
        noise = "; on was faster: noise" if cost < 0 else ""
        rows.append(
            Row(
                f"metrics cost in throughput, {label}",
                f"{100 * cost:.1f} % ({c.rate_on:,.0f} msg/s on, {c.rate_off:,.0f} off{noise})",
                f"≤ {100 * COST_TARGET:g} %",
                cost <= COST_TARGET,
            )
        )
        if c.aa:
            rows.append(
                Row(
                    f"A/A check (metrics off in both), {label}",
                    " and ".join(f"{100 * v:+.1f} %" for v in c.aa),
                    "—",
                    None,
                )
            )
        extra = c.cpu_on / c.cpu_off - 1.0
        rows.append(
            Row(
                f"metrics cost in CPU per message, {label}",
                f"{100 * extra:+.1f} % ({c.cpu_on:.1f} µs on, {c.cpu_off:.1f} µs off)",
                "—",
                None,
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    """The markdown table."""
    lines = ["| measure | value | target | met? |", "|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.value} | {r.target} | {met} |")
    return "\n".join(lines)


def section(rows: list[Row], plan: Plan, notes: Notes, elapsed: float, quick: bool) -> str:
    """The BENCHMARKS.md section between the control markers."""
    date = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    spreads = []
    for label, runs in notes.runs.items():
        on = ", ".join(f"{r:,.0f}" for r in runs[True])
        off = ", ".join(f"{r:,.0f}" for r in runs[False])
        spreads.append(f"{label}: on {on}; off {off}")
    worst = max(notes.others_pct, default=0.0)
    runs_text = "; ".join(spreads)
    text = [
        f"Measured {date} on {_report.machine(('iceoryx2', 'numpy', 'pyzmq', 'plexa'))}.",
        "",
        render(rows),
        "",
        f"`python benchmarks/control.py{' --quick' if quick else ''}` ({elapsed:.0f} s). "
        f"Round trips: `Client.request` from this process to a `plexa server "
        f"examples/imaging.yaml` subprocess running its pipeline (512x512 frames at 100 Hz), "
        f"zmq over TCP on 127.0.0.1; {plan.requests} requests of each kind after "
        f"{plan.warm_requests} of warm-up, alternating in blocks of {plan.block}. "
        f"`Nexus.status()`: {plan.status_calls} calls in-process on the running 100 B pipeline "
        "below (2 actors, 1 link). Metrics cost: `Producer` → `Consumer` of "
        "`benchmarks/actors.py` over a lossless `block` link (capacity 8 for 100 B `put`, 4 "
        "for 512 KB uint16 `loan`), sending as fast as the link allows, the consumer reading "
        f"both ends of each message. {plan.reps} runs; each starts a `metrics: true` and a "
        "`metrics: false` pipeline in fresh processes, pauses both and lets them run in turn, "
        f"{plan.slice_s:g} s at a time, until each has run {plan.window_s:g} s (after "
        f"{plan.warm_s:g} s of warm-up each), so both see the same machine (which starts first "
        "alternates between runs); a setting's throughput is its link's `received` count over "
        "its slices; cost = "
        "1 - median(on) / median(off); CPU per message is the user + system time of both "
        "actor processes over the window divided by the messages received. The A/A check runs "
        "the same method with `metrics: false` in both pipelines: what it reports when there "
        f"is no difference, i.e. its noise. Runs (msg/s): {runs_text}. "
        "The machine is shared: each measurement waited up to "
        f"{plan.quiet_s:g} s for other processes to use less than {QUIET_PCT:g} % of a core "
        f"({notes.loud} started anyway), a run during which they took more than "
        f"{DISTURBED_PCT:g} % was run again ({notes.redone} redone), and the most they took "
        f"during a run kept was {worst:.0f} % of a core.",
    ]
    if notes.problems:
        text += ["", "Problems seen in this run:", ""] + [f"* {p}" for p in notes.problems]
    title = "## Control: round trips and the cost of metrics"
    return f"{BEGIN}\n{title}\n\n" + "\n".join(text) + f"\n{END}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every measurement ran (targets met or not)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, one run each")
    parser.add_argument("--reps", type=int, help="runs per metrics setting (default 3)")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md even if --quick")
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = dataclasses.replace(plan, reps=args.reps)
    notes = Notes(redo_budget=plan.redos)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s]{text}", flush=True)

    log(" round trips to plexa server")
    if wait_quiet(plan.quiet_s) >= QUIET_PCT:
        notes.loud += 1
    rtt = round_trips(plan, notes, log)
    log(" metrics cost")
    costs, status_ns = metrics_cost(plan, notes, log)
    rows = rows_of(rtt, costs, status_ns)
    elapsed = time.perf_counter() - started
    print()
    print(render(rows))
    print(f"\n{_report.machine(('iceoryx2', 'numpy', 'pyzmq', 'plexa'))}; {elapsed:.0f} s")
    for problem in notes.problems:
        print(f"WARNING: {problem}")
    if not args.no_write and (args.write or not args.quick):
        _report.write_section(section(rows, plan, notes, elapsed, args.quick), BEGIN, END)
        print(f"wrote the control section of {BENCHMARKS_MD}")
    return 1 if notes.problems else 0


if __name__ == "__main__":
    sys.exit(main())
