"""Command-line benchmark: how fast ``plexa ctl NAME status`` answers a person.

``python benchmarks/cli.py`` starts ``plexa server examples/minimal.yaml`` (two actors and one
running link) in a private runtime directory, then measures:

1. the wall time of ``plexa ctl NAME status`` as a user runs it (a fresh ``python -m plexa``
   process, tables printed to a pipe): median and p90 of 20 runs, after 2 of warm-up; and
   the CPU time (user + system) the process used, which the machine's load does not inflate;
2. the import time of the control path (``python -X importtime -c "import
   plexa.edges.cli_ctl, plexa.edges.client"``, the cumulative time of those two, median of 5)
   and how many modules it loads, and whether numpy, typer or rich is among them.

``--src DIR`` measures another checkout's ``src`` (e.g. ``--src /work/main/src`` for the
tree before this change) with the same interpreter. The result is printed and written into
``BENCHMARKS.md`` between the ``<!-- cli -->`` markers (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import _report  # noqa: E402

BEGIN, END = "<!-- cli -->", "<!-- /cli -->"
TARGET_MS = 150.0
RUNS = 20


def _env(runtime: Path, src: str | None) -> dict[str, str]:
    env = {**os.environ, "PLEXA_RUNTIME_DIR": str(runtime)}
    if src:
        env["PYTHONPATH"] = src
    return env


def _wait_running(env: dict[str, str], name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [sys.executable, "-m", "plexa", "ctl", name, "status", "--json"],
            capture_output=True,
            text=True,
            env=env,
        )
        if probe.returncode == 0 and '"running"' in probe.stdout:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server {name!r} did not start running within {timeout} s")


def _one(env: dict[str, str], name: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``plexa ctl NAME status``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "ctl", name, "status"],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _imports(env: dict[str, str]) -> tuple[float, int, str]:
    """Cumulative import ms of the control path, modules loaded, heavy ones among them."""
    times: list[float] = []
    count, heavy = 0, ""
    for _ in range(5):
        out = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import plexa.edges.cli_ctl, plexa.edges.client",
            ],
            capture_output=True,
            text=True,
            env=env,
        ).stderr
        rows = [line.split("|") for line in out.splitlines() if line.startswith("import time:")]
        rows = [r for r in rows if len(r) == 3 and r[1].strip().isdigit()]
        top = [r for r in rows if not r[2].startswith("  ")]  # imported by the statement itself
        total = sum(int(r[1]) for r in top if r[2].strip().startswith("plexa"))
        times.append(total / 1e3)
        names = {r[2].strip() for r in rows}
        count = len(names)
        heavy = ", ".join(sorted(names & {"numpy", "typer", "rich", "psutil", "yaml"}))
    return statistics.median(times), count, heavy


def measure(src: str | None) -> dict[str, object]:
    """Start a server, time ``ctl status`` and the control path's imports, stop the server."""
    # A user's Python caches compiled modules after the first run; where PYTHONDONTWRITEBYTECODE
    # is set (as on the CI machines) an editable install would be compiled on every command.
    tree = Path(src) if src else REPO / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "plexa")], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="plexa-bench-cli-") as tmp:
        runtime = Path(tmp)
        env = _env(runtime, src)
        name = f"bench-cli-{os.getpid()}"
        server = subprocess.Popen(
            [sys.executable, "-m", "plexa", "server", "examples/minimal.yaml", "--name", name],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_running(env, name)
            for _ in range(2):
                _one(env, name)
            samples = [_one(env, name) for _ in range(RUNS)]
        finally:
            subprocess.run(
                [sys.executable, "-m", "plexa", "ctl", name, "quit"],
                capture_output=True,
                env=env,
            )
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        walls = sorted(w for w, _ in samples)
        cpus = sorted(c for _, c in samples)
        import_ms, modules, heavy = _imports(env)
        return {
            "wall_ms": statistics.median(walls) * 1e3,
            "wall_p90_ms": walls[int(0.9 * (len(walls) - 1))] * 1e3,
            "cpu_ms": statistics.median(cpus) * 1e3,
            "import_ms": import_ms,
            "modules": modules,
            "heavy": heavy,
            "load": os.getloadavg()[0],
        }


def _section(r: dict[str, object], before: dict[str, object] | None) -> str:
    today = dt.date.today().isoformat()
    rows = [("this tree", r)] + ([("before (--src)", before)] if before else [])
    lines = [
        BEGIN,
        "## Command line: `plexa ctl NAME status`",
        "",
        f"{today}; {_report.machine(('pyzmq', 'msgspec', 'plexa'))}. "
        "`python benchmarks/cli.py`: "
        f"a fresh `python -m plexa ctl NAME status` against `plexa server examples/minimal.yaml`, "
        f"median of {RUNS} (target <= {TARGET_MS:.0f} ms wall); CPU is user + system time of the "
        "process (the machine's load inflates wall time, not CPU time). Import: cumulative "
        "`-X importtime` of `plexa.edges.cli_ctl` + `plexa.edges.client`, median of 5.",
        "",
        "| tree | wall p50 | wall p90 | CPU p50 | control-path import | modules | heavy modules "
        "| load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, x in rows:
        lines.append(
            f"| {label} | {x['wall_ms']:.0f} ms | {x['wall_p90_ms']:.0f} ms "
            f"| {x['cpu_ms']:.0f} ms "
            f"| {x['import_ms']:.0f} ms | {x['modules']} | {x['heavy'] or 'none'} "
            f"| {x['load']:.1f} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="measure this checkout's src directory too (before)")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    opts = parser.parse_args()
    result = measure(None)
    before = measure(opts.src) if opts.src else None
    text = _section(result, before)
    print(text)
    if not opts.no_write:
        _report.write_section(text, BEGIN, END)


if __name__ == "__main__":
    main()
