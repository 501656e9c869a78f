"""Chaos benchmark: kill, freeze and break actors of a live pipeline under load; count everything.

``python benchmarks/chaos.py [--seconds N] [--rate HZ] [--quick]`` runs::

    src.frames ──block──> mid ──block──> sink
    src.tap ──drop_oldest──> mid2 ──latest──> sink2

with 64 KB frames at ``--rate`` frames/s (default 500) for ``--seconds`` (default 60; 20 with
``--quick``). Every actor has ``restart: on-failure``. The thread that drives the nexus
(``nx.poll`` in 5 ms steps) also injects a fault every 2-4 s, one at a time, into a random
actor (``src`` less often than the others), once every actor is running again:

* ``sigkill``: ``os.killpg(pid, SIGKILL)``;
* ``sigstop``: ``os.killpg(pid, SIGSTOP)``; the nexus must report it ``hung`` after
  ``settings.hang_timeout`` and kill it; the benchmark then sends SIGCONT (or after
  2 x ``hang_timeout`` if nothing happened);
* ``exception``: ``nx.invoke(actor, "explode")`` arms a fault that raises from the actor's next
  step or handler call (:mod:`benchmarks.chaos_actors`);
* ``stall``: SIGSTOP for 0.4 x ``hang_timeout``, then SIGCONT: a slow actor, not a hung one;
  nothing may be reported.

Times come from the nexus's own events (a listener on ``failure`` and ``state``): detection is
fault → the actor's failure is recorded, recovery is fault → its new process is ``running``,
flowing is fault → both sinks take new frames after the recovery. At the end the pipeline is
stopped and every link must satisfy ``lost == 0`` and ``sent == received + dropped``; after
``quit`` no process of the run and no shared memory of the run may remain. The exit status is
1 when any of that fails, 2 when only the faults were mishandled (one went undetected, was
reported as the wrong kind, was not recovered, or a stall was reported), 0 otherwise.
The table is printed and written into ``BENCHMARKS.md`` between the ``<!-- chaos -->``
markers (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # actor classes are "benchmarks.chaos_actors:..."; the
    # nexus forwards sys.path to the actor processes

from benchmarks import _report  # noqa: E402

import plexa  # noqa: E402
from plexa import ActorState  # noqa: E402
from plexa.nexus.attach import Listener  # noqa: E402

BENCHMARKS_MD = _report.BENCHMARKS_MD
BEGIN, END = "<!-- chaos -->", "<!-- /chaos -->"
SHM = Path("/dev/shm")
ACTORS = ("src", "mid", "sink", "mid2", "sink2")
WEIGHTS = {"src": 0.5, "mid": 1.0, "sink": 1.0, "mid2": 1.0, "sink2": 1.0}
KINDS = {"sigkill": 0.35, "sigstop": 0.2, "exception": 0.3, "stall": 0.15}
EXPECTED = {"sigkill": "killed", "sigstop": "hung", "exception": "exception", "stall": None}
SINK_LINKS = ("mid.out->sink.inp", "mid2.out->sink2.inp")
RECOVERY_LIMIT_S = 15.0
"""A fault whose actor is not running again this long after it counts as not recovered."""


@dataclass
class Params:
    """What one run does."""

    seconds: float
    rate_hz: float
    frame_bytes: int = 65536
    hang_timeout: float = 1.0
    backoff: float = 0.05
    restart_window: float = 10.0
    max_restarts: int = 1000
    gap: tuple[float, float] = (2.0, 4.0)
    seed: int = 0
    kinds: tuple[str, ...] = tuple(KINDS)
    targets: tuple[str, ...] = ACTORS


@dataclass
class Fault:
    """One injected fault and what the nexus made of it."""

    n: int
    kind: str
    actor: str
    t0: float
    restarts_before: int
    proc: Any = None
    injected: bool = True
    note: str = ""
    failed_at: float | None = None
    failure_kind: str = ""
    error: str = ""
    down_at: float | None = None
    """When the nexus saw the process gone and scheduled the restart."""
    running_at: float | None = None
    flowing_at: float | None = None
    flow_mark: dict[str, int] = field(default_factory=dict)
    cont_due: float | None = None
    done: bool = False

    @property
    def expected(self) -> str | None:
        """The failure kind the nexus should report (None: no failure)."""
        return EXPECTED[self.kind]

    def ms(self, at: float | None) -> float | None:
        """Milliseconds from the fault to ``at``."""
        return None if at is None else (at - self.t0) * 1e3


def pipeline(p: Params) -> str:
    """The pipeline file (JSON is YAML)."""

    def actor(cls: str, **options: Any) -> dict[str, Any]:
        return {
            "class": f"benchmarks.chaos_actors:{cls}",
            "options": options,
            "restart": "on-failure",
            "max_restarts": p.max_restarts,
            "restart_window": p.restart_window,
            "backoff": p.backoff,
        }

    spec = {
        "name": "bench-chaos",
        "settings": {
            "hang_timeout": p.hang_timeout,
            "on_failure": "continue",
            "store_size": "16MiB",
        },
        "actors": {
            "src": actor("ChaosSource", size=p.frame_bytes, rate_hz=p.rate_hz),
            "mid": actor("ChaosRelay"),
            "sink": actor("ChaosSink"),
            "mid2": actor("ChaosRelay", stall_every=250, stall_s=0.03),
            "sink2": actor("ChaosSink"),
        },
        "connections": {
            "src.frames": {"to": ["mid.inp"], "policy": "block", "capacity": 8},
            "src.tap": {"to": ["mid2.inp"], "policy": "drop_oldest", "capacity": 4},
            "mid.out": {"to": ["sink.inp"], "policy": "block", "capacity": 8},
            "mid2.out": {"to": ["sink2.inp"], "policy": "latest", "capacity": 4},
        },
    }
    return json.dumps(spec)


class Chaos:
    """Drives one run: the nexus, the faults, and the nexus's events about them."""

    def __init__(self, nx: plexa.Nexus, p: Params, log: Any) -> None:
        self.nx = nx
        self.p = p
        self.log = log
        self.rng = random.Random(p.seed)
        self.faults: list[Fault] = []
        self.current: Fault | None = None
        self.stray: list[str] = []
        """Failures nobody injected (or of another actor than the one hit)."""
        self.problems: list[str] = []
        self.torn = 0
        self._last_flow = 0.0
        nx.attach(Listener(self.on_event))

    # ----- the nexus's events -------------------------------------------------------------
    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        f = self.current
        if kind == "failure":
            actor = data.get("actor", "?")
            if f is not None and actor == f.actor and f.failed_at is None and f.injected:
                f.failed_at = now
                f.failure_kind = str(data.get("kind"))
                f.error = str(data.get("error", ""))
            else:
                what = f"#{f.n} {f.kind} {f.actor}" if f is not None else "no fault"
                self.stray.append(
                    f"{actor}: {data.get('kind')} in {data.get('phase')} ({data.get('error')}) "
                    f"during {what}"
                )
        elif kind == "state" and data.get("state") == "restarting":
            if f is not None and data.get("actor") == f.actor and f.down_at is None:
                f.down_at = now
        elif kind == "state" and data.get("state") == "running":
            if (
                f is not None
                and data.get("actor") == f.actor
                and f.failed_at is not None
                and f.running_at is None
            ):
                f.running_at = now
        elif kind == "log" and "torn frame" in str(data.get("message", "")):
            self.torn += 1

    # ----- faults -----------------------------------------------------------------------
    def all_running(self) -> bool:
        return all(
            a.state is ActorState.RUNNING and a.proc is not None and not a.pending_restart
            for a in self.nx.actors.values()
        )

    def inject(self, n: int) -> Fault:
        names = list(self.p.targets)
        actor = self.rng.choices(names, [WEIGHTS[a] for a in names])[0]
        kinds = list(self.p.kinds)
        kind = self.rng.choices(kinds, [KINDS[k] for k in kinds])[0]
        a = self.nx.actors[actor]
        proc = a.proc
        assert proc is not None
        f = Fault(n, kind, actor, 0.0, a.restarts, proc)
        self.current = f
        f.t0 = time.monotonic()
        if kind == "sigkill":
            os.killpg(proc.pid, signal.SIGKILL)
        elif kind in ("sigstop", "stall"):
            os.killpg(proc.pid, signal.SIGSTOP)
            share = 2.0 if kind == "sigstop" else 0.4
            f.cont_due = f.t0 + share * self.p.hang_timeout
        else:
            try:
                self.nx.invoke(actor, "explode", timeout=2.0)
            except plexa.PlexaError as exc:
                f.injected = False
                f.note = f"explode refused: {exc}"
        self.faults.append(f)
        return f

    def _cont(self, f: Fault) -> None:
        """SIGCONT the frozen process, unless it is gone (reaped: its pid may be reused)."""
        f.cont_due = None
        if f.proc.exit_code() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(f.proc.pid, signal.SIGCONT)

    def _flow(self) -> dict[str, int]:
        links = self.nx.status()["links"]
        return {name: int(links[name]["received"]) for name in SINK_LINKS}

    def advance(self, f: Fault) -> None:
        """Move fault ``f`` on: SIGCONT when due, flow checks, the end."""
        now = time.monotonic()
        if f.cont_due is not None and (now >= f.cont_due or f.failed_at is not None):
            self._cont(f)
        if f.kind == "stall" or not f.injected:
            if f.cont_due is None and now - f.t0 >= 2.5 * self.p.hang_timeout:
                f.done = True
            return
        if f.running_at is not None:
            if not f.flow_mark:
                f.flow_mark = self._flow()
                self._last_flow = now
            elif now - self._last_flow >= 0.02:
                self._last_flow = now
                flow = self._flow()
                if all(flow[k] > f.flow_mark[k] for k in SINK_LINKS):
                    f.flowing_at = now
                    f.done = True
        if not f.done and now - f.t0 > RECOVERY_LIMIT_S:
            f.done = True
            f.note = f.note or (
                "not detected" if f.failed_at is None else "detected but not recovered"
            )

    def run(self, seconds: float) -> None:
        """Inject faults for ``seconds``, then wait for the last one to settle."""
        nx = self.nx
        end = time.monotonic() + seconds
        next_at = time.monotonic() + self.rng.uniform(*self.p.gap)
        n = 0
        while True:
            nx.poll(0.005)
            now = time.monotonic()
            f = self.current
            if f is not None:
                self.advance(f)
                if f.done:
                    self.report(f)
                    self.current = None
                    next_at = max(next_at, now + 0.5)
                continue
            if now >= end:
                return
            if now >= next_at and now < end - 1.0 and self.all_running():
                n += 1
                self.inject(n)
                next_at = now + self.rng.uniform(*self.p.gap)

    def report(self, f: Fault) -> None:
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.0f} ms"

        bad = verdict(f)
        self.log(
            f"#{f.n:<3} {f.kind:<9} {f.actor:<5} detected {fmt(f.ms(f.failed_at)):>8} "
            f"({f.failure_kind or '-'}), gone {fmt(f.ms(f.down_at)):>8}, "
            f"running {fmt(f.ms(f.running_at)):>8}, "
            f"flowing {fmt(f.ms(f.flowing_at)):>8}" + (f"  ** {bad}" if bad else "")
        )


def verdict(f: Fault) -> str:
    """What went wrong with fault ``f`` ("" when the nexus handled it right)."""
    if not f.injected:
        return f.note
    if f.expected is None:
        if f.failed_at is not None:
            return f"a pause below hang_timeout failed the actor ({f.failure_kind}: {f.error})"
        return ""
    if f.failed_at is None:
        return "not detected"
    if f.failure_kind != f.expected:
        return f"reported {f.failure_kind}, expected {f.expected}"
    if f.running_at is None:
        return "not running again"
    if f.flowing_at is None:
        return "running but no frames reached the sinks"
    return f.note


# ----- the run ------------------------------------------------------------------------------


@dataclass
class Result:
    """Everything the table shows."""

    params: Params
    faults: list[Fault]
    links: dict[str, dict[str, Any]]
    restarts: dict[str, int]
    failures: dict[str, int]
    stray: list[str]
    problems: list[str]
    leftovers: list[str]
    late_leftovers: list[str]
    run_id: str
    torn: int
    quit_graceful: bool
    elapsed: float
    chaos_s: float
    """Seconds from the pipeline's run to its stop."""
    load: tuple[float, float]
    """The 1-minute load average at the start and at the end."""


def leftovers(run_id: str, run_dir: Path) -> list[str]:
    """Processes and files of run ``run_id`` that still exist."""
    found: list[str] = []
    out = subprocess.run(
        ["pgrep", "-f", f"plexa.runtime.process .*{run_id}"], capture_output=True, text=True
    ).stdout
    found += [f"process {pid}" for pid in out.split()]
    found += [str(p) for p in sorted(SHM.glob(f"plx{run_id}_*"))]
    found += [str(p) for p in (SHM / f"plexa-{run_id}", run_dir) if p.exists()]
    return found


def run(p: Params, log: Any) -> Result:
    """One chaos run with parameters ``p``."""
    started = time.monotonic()
    load0 = os.getloadavg()[0]
    spec = plexa.loads(pipeline(p), source="benchmarks/chaos.py")
    problems: list[str] = []
    with plexa.Nexus(spec) as nx:
        chaos = Chaos(nx, p, log)
        run_id, run_dir = nx.paths.run_id, nx.paths.run_dir
        log(f"run {run_id}: {p.seconds:g} s at {p.rate_hz:g} frames/s, log {nx.log_path}")
        nx.start()
        nx.setup()
        nx.run()
        ran = time.monotonic()
        nx.poll(1.0)  # warm-up
        chaos.run(p.seconds)
        try:  # every restart must have landed before the accounting is read
            nx.wait_until(lambda st: chaos.all_running(), 15.0)
        except plexa.PlexaError as exc:
            problems.append(f"not every actor was running at the end: {exc}")
        nx.poll(0.5)
        stopping = time.monotonic()
        try:
            nx.stop()
        except plexa.PlexaError as exc:
            problems.append(f"stop failed: {exc}")
        status = nx.status()
        restarts = {n: a.restarts for n, a in nx.actors.items()}
        states = {n: a.state.value for n, a in nx.actors.items()}
        report = nx.quit()
    left = leftovers(run_id, run_dir)
    late: list[str] = []
    if left:
        time.sleep(2.0)
        late = leftovers(run_id, run_dir)
    if report.terminated or report.killed:
        problems.append(
            f"quit needed SIGTERM for {list(report.terminated)}, SIGKILL for {list(report.killed)}"
        )
    if any(s != "stopped" for s in states.values()):
        problems.append(f"states after stop: {states}")
    failures: dict[str, int] = {}
    for failure in report.failures:
        failures[failure.actor] = failures.get(failure.actor, 0) + 1
    return Result(
        p,
        chaos.faults,
        status["links"],
        restarts,
        failures,
        chaos.stray,
        problems + chaos.problems,
        left,
        late,
        run_id,
        chaos.torn,
        not (report.terminated or report.killed),
        time.monotonic() - started,
        stopping - ran,
        (load0, os.getloadavg()[0]),
    )


# ----- the table ------------------------------------------------------------------------------


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} / {max(values):.0f} ms"


def check(r: Result) -> tuple[list[str], list[str]]:
    """How the run fell short: (messages lost or miscounted, or leftovers; faults mishandled)."""
    lost: list[str] = []
    for name, link in r.links.items():
        if link["lost"]:
            lost.append(f"{name}: lost {link['lost']}")
        if link["sent"] != link["received"] + link["dropped"]:
            lost.append(
                f"{name}: sent {link['sent']} != received {link['received']} + dropped "
                f"{link['dropped']}"
            )
    if r.torn:
        lost.append(f"{r.torn} torn frames")
    if r.leftovers:
        still = f"; after 2 s more: {', '.join(r.late_leftovers) or 'none'}"
        lost.append(f"left after quit: {', '.join(r.leftovers)}{still}")
    handling: list[str] = []
    for f in r.faults:
        why = verdict(f)
        if why:
            handling.append(f"fault #{f.n} ({f.kind} {f.actor}): {why}")
    expected: dict[str, int] = {}
    for f in r.faults:
        if f.injected and f.expected is not None:
            expected[f.actor] = expected.get(f.actor, 0) + 1
    for name in ACTORS:
        if r.restarts.get(name, 0) != expected.get(name, 0):
            handling.append(
                f"{name}: {r.restarts.get(name, 0)} restarts for {expected.get(name, 0)} "
                "injected failures"
            )
    handling += [f"unexpected failure: {s}" for s in r.stray]
    handling += r.problems
    return lost, handling


def render(r: Result) -> str:
    """The markdown tables of one run."""
    lines = [
        "| link | policy | sent | received | dropped | lost | sent = received + dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, link in r.links.items():
        ok = link["sent"] == link["received"] + link["dropped"]
        lines.append(
            f"| `{name}` | {link['policy']} | {link['sent']:,} | {link['received']:,} | "
            f"{link['dropped']:,} | {link['lost']} | {'yes' if ok else '**no**'} |"
        )
    lines += [
        "",
        "| fault | injected | detected as | detection p50 / max | running again p50 / max "
        "| frames flowing again p50 / max |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        fs = [f for f in r.faults if f.kind == kind and f.injected]
        if not fs:
            continue
        seen = sorted({f.failure_kind for f in fs if f.failure_kind})
        det = [v for f in fs if (v := f.ms(f.failed_at)) is not None]
        rec = [v for f in fs if (v := f.ms(f.running_at)) is not None]
        flow = [v for f in fs if (v := f.ms(f.flowing_at)) is not None]
        if kind == "stall":
            flagged = sum(1 for f in fs if f.failed_at is not None)
            label = "nothing" if not flagged else f"**{flagged} reported ({', '.join(seen)})**"
            lines.append(f"| {kind} | {len(fs)} | {label} | - | - | - |")
            continue
        missed = len(fs) - len(det)
        label = ", ".join(seen) + (f", **{missed} missed**" if missed else "")
        lines.append(f"| {kind} | {len(fs)} | {label} | {_pct(det)} | {_pct(rec)} | {_pct(flow)} |")
    real = [f for f in r.faults if f.injected and f.expected is not None]
    if real:
        rec = [v for f in real if (v := f.ms(f.running_at)) is not None]
        flow = [v for f in real if (v := f.ms(f.flowing_at)) is not None]
        lines.append(f"| all but stall | {len(real)} | | | {_pct(rec)} | {_pct(flow)} |")
    hits = {n: sum(1 for f in r.faults if f.actor == n and f.injected) for n in ACTORS}
    lines += [
        "",
        "| actor | faults (stalls included) | failures reported | restarts |",
        "|---|---|---|---|",
    ]
    for name in ACTORS:
        lines.append(
            f"| {name} | {hits[name]} | {r.failures.get(name, 0)} | {r.restarts.get(name, 0)} |"
        )
    left = ", ".join(r.leftovers) if r.leftovers else "none"
    lines += ["", f"Leftovers after quit (processes of the run, `/dev/shm` entries): {left}."]
    return "\n".join(lines)


def command_line(p: Params) -> str:
    """The options of this run."""
    words = [f"--seconds {p.seconds:g}", f"--rate {p.rate_hz:g}", f"--seed {p.seed}"]
    if p.kinds != tuple(KINDS):
        words.append(f"--kinds {','.join(p.kinds)}")
    if p.targets != ACTORS:
        words.append(f"--actors {','.join(p.targets)}")
    if p.gap != (2.0, 4.0):
        words.append(f"--gap {p.gap[0]:g} {p.gap[1]:g}")
    return " ".join(words)


def section(r: Result, bad: list[str]) -> str:
    """The BENCHMARKS.md section between the chaos markers."""
    p = r.params
    date = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    injected = [f for f in r.faults if f.injected]
    verdict = "**passed**" if not bad else "**failed**"
    notes = [
        f"Measured {date} on {_report.machine()}.",
        "",
        f"`python benchmarks/chaos.py {command_line(p)}` "
        f"({r.elapsed:.0f} s, run `{r.run_id}`): {verdict}. "
        f"{len(injected)} faults in {p.seconds:g} s, one every {p.gap[0]:g}-{p.gap[1]:g} s "
        "once every actor was running again.",
        "",
        render(r),
        "",
        f"Pipeline: `src.frames` →(block, 8)→ `mid` →(block, 8)→ `sink` and `src.tap` "
        f"→(drop_oldest, 4)→ `mid2` →(latest, 4)→ `sink2`; {p.frame_bytes // 1024} KB int64 "
        f"frames at {p.rate_hz:g} frames/s on each port (loaned); `mid2` sleeps 30 ms every "
        "250 frames, so its drop links drop while everyone is alive. Every actor: "
        f"`restart: on-failure`, `max_restarts: {p.max_restarts}`, "
        f"`restart_window: {p.restart_window:g}`, `backoff: {p.backoff:g}` (doubled per restart "
        f"in the window); `hang_timeout: {p.hang_timeout:g}`, `on_failure: continue`. Faults "
        "(random actor, `src` at half the weight of the others): `sigkill` = "
        "`os.killpg(pid, SIGKILL)`; `sigstop` = `os.killpg(pid, SIGSTOP)`, SIGCONT once the "
        "nexus reported it (it kills a hung actor itself); `exception` = "
        '`nx.invoke(actor, "explode")`, after which the next step or handler raises (timed '
        "from the invoke call); `stall` = SIGSTOP for "
        f"{0.4 * p.hang_timeout:g} s, below `hang_timeout`, which must not be reported. "
        "Times are from the fault to the nexus's own `failure` event (detection), to the "
        "`running` state of the new process (running again), and to both sinks taking new "
        "frames after that (flowing). Link counts are read after `stop`; the source sent "
        f"{r.links['src.frames->mid.inp']['sent'] / max(r.chaos_s, 1e-9):.0f} frames/s on "
        "average, because the `block` links hold it while `mid` or `sink` restarts. Restart times "
        "include starting a Python process that imports numpy and iceoryx2, so they grow "
        f"with the machine's load: the 1-minute load average was {r.load[0]:.1f} at the start "
        f"and {r.load[1]:.1f} at the end (the machine is shared).",
    ]
    if bad:
        notes += ["", "Problems:", ""] + [f"* {b}" for b in bad]
    if any("InterruptSignal" in f.error for f in r.faults):
        notes += [
            "",
            "`ListenerWaitError: InterruptSignal` comes from iceoryx2's `Listener.timed_wait`, "
            "which returns that error when the wait is interrupted (EINTR), as a stopped and "
            "continued process's wait is; `Wake.wait` in `src/plexa/_links.py` does not retry "
            "it, so an actor that was idle or waiting for room when it was paused fails.",
        ]
    return f"{BEGIN}\n## Chaos: faults under load\n\n" + "\n".join(notes) + f"\n{END}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when nothing was lost, every fault was handled, nothing was left."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, help="seconds of chaos (default 60)")
    parser.add_argument("--rate", type=float, default=500.0, help="frames/s (default 500)")
    parser.add_argument("--quick", action="store_true", help="20 s of chaos")
    parser.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"faults to inject (default {','.join(KINDS)})"
    )
    parser.add_argument(
        "--actors", default=",".join(ACTORS), help=f"actors to hit (default {','.join(ACTORS)})"
    )
    parser.add_argument(
        "--gap", type=float, nargs=2, default=(2.0, 4.0), help="seconds between faults"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    targets = tuple(a for a in args.actors.split(",") if a)
    unknown = [k for k in kinds if k not in KINDS] + [a for a in targets if a not in ACTORS]
    if unknown or not kinds or not targets:
        parser.error(f"unknown or missing fault kinds or actors: {unknown}")
    seconds = args.seconds if args.seconds is not None else (20.0 if args.quick else 60.0)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    p = Params(
        seconds=seconds,
        rate_hz=args.rate,
        seed=seed,
        kinds=kinds,
        targets=targets,
        gap=(args.gap[0], args.gap[1]),
    )
    t0 = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {text}", flush=True)

    log(f"seed {seed}")
    r = run(p, log)
    lost, handling = check(r)
    bad = lost + handling
    print()
    print(render(r))
    print()
    if bad:
        print("FAILED:")
        for b in bad:
            print(f"  {b}")
    else:
        print("passed: nothing lost, every fault detected and recovered, nothing left behind")
    if not args.no_write:
        _report.write_section(section(r, bad), BEGIN, END)
        print(f"wrote the chaos section of {BENCHMARKS_MD}")
    return 1 if lost else (2 if handling else 0)


if __name__ == "__main__":
    sys.exit(main())
