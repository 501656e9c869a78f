"""Control-plane guard benchmark: round trips per transport, and what refused requests cost.

``python benchmarks/control_guard.py`` starts ``plexa server examples/imaging.yaml`` (its
pipeline running: 512x512 frames at 100 Hz) twice, once with the default local endpoints
(ipc sockets in the run directory) and once with ``--bind 127.0.0.1`` (tcp; CURVE since the
control-plane hardening), and measures for each:

1. ``ping`` and ``status`` round trips (``Client.request``): p50 and p99 over 500 of each
   after 50 of warm-up, alternating in blocks of 50;
2. what a refused request costs the server: the user + system CPU time of the server
   process per request, over a burst of requests with a wrong token and a long command name
   (100-byte frames, then 1,000,000-byte ones) sent back to back from one DEALER and all
   answered, minus the CPU the server used at rest over the same wall time; and the bytes
   it wrote to stderr per refused request;
3. the 1,023-byte nesting frame of issue 10 without a token: whether the server answered it
   and was still running after it.

``--src PATH`` measures another checkout's ``src`` (e.g. the commit before the hardening) by
putting it first on ``PYTHONPATH``; ``--write`` puts the table into ``BENCHMARKS.md``
between the ``<!-- control-guard -->`` markers, with the rows of each ``--src`` given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
import psutil  # noqa: E402
import zmq  # noqa: E402
from benchmarks import _report  # noqa: E402

BEGIN, END = "<!-- control-guard -->", "<!-- /control-guard -->"
IMAGING = REPO / "examples" / "imaging.yaml"
NESTED = b"\x82\xa7command\xa4ping\xa4args\x81\xa1a" + b"\x91" * 1000 + b"\xc0"


@contextlib.contextmanager
def served(src: str | None, bind: list[str], err_file: Path) -> Iterator[tuple[Any, Any]]:
    """A running ``plexa server`` and a client of it (the client from ``src``'s plexa)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    name = f"guard{os.getpid()}{random.randrange(10**6)}"
    with err_file.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plexa", "server", str(IMAGING), "--name", name, *bind],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=REPO,
        )
    import plexa

    client = None
    try:
        deadline = time.monotonic() + 60
        while client is None:
            try:
                c = plexa.connect(name, timeout=2.0)
                if c.status()["run"]["state"] == "running":
                    client = c
                else:
                    c.close()
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield proc, client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.request("quit")
            client.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def round_trips(client: Any, n: int = 500) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[float]] = {"ping": [], "status": []}
    for command in ("ping", "status"):
        for _ in range(50):
            client.request(command)
    for block in range(2 * n // 50):
        command = ("ping", "status")[block % 2]
        for _ in range(50):
            t0 = time.perf_counter_ns()
            client.request(command)
            samples[command].append((time.perf_counter_ns() - t0) / 1e3)
    return {k: _pcts(v) for k, v in samples.items()}


def _pcts(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(0.99 * len(values)))]


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def refusal_cost(proc: subprocess.Popen[bytes], client: Any, err_file: Path) -> dict[str, Any]:
    """Server CPU µs and stderr bytes per refused request, for small and 1 MB frames."""
    server = psutil.Process(proc.pid)
    c0, t0 = _cpu(server), time.monotonic()
    time.sleep(2.0)
    rest = (_cpu(server) - c0) / (time.monotonic() - t0)  # CPU seconds per second at rest
    out: dict[str, Any] = {}
    endpoint = client.sock.getsockopt_string(zmq.LAST_ENDPOINT)
    for label, size, n in (("100 B", 100, 2000), ("1 MB", 1_000_000, 100)):
        frame = msgspec.msgpack.encode({"command": "x" * (size - 30), "token": "wrong"})
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        _secure(client, sock)
        sock.connect(endpoint)
        err0 = err_file.stat().st_size
        c0, t0 = _cpu(server), time.monotonic()
        for _ in range(n):
            sock.send(frame)
        answered = 0
        while answered < n and sock.poll(20_000):
            sock.recv()
            answered += 1
        wall = time.monotonic() - t0
        used = _cpu(server) - c0 - rest * wall
        time.sleep(0.5)  # let the server's log writes land
        out[label] = {
            "cpu_us": used / n * 1e6,
            "stderr_bytes": (err_file.stat().st_size - err0) / n,
            "answered": answered,
            "n": n,
        }
        sock.close()
        ctx.term()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    _secure(client, sock)
    sock.connect(endpoint)
    sock.send(NESTED)
    out["nesting answered"] = bool(sock.poll(5000))
    sock.close()
    ctx.term()
    time.sleep(1.0)
    out["alive after nesting"] = proc.poll() is None
    return out


def _secure(client: Any, sock: zmq.Socket[Any]) -> None:
    """Give ``sock`` the client's CURVE keys (clients from before the hardening have none)."""
    secure = getattr(client, "_secure", None)
    if secure is not None:
        secure(sock)


def measure(src: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, bind in (("local", []), ("tcp 127.0.0.1", ["--bind", "127.0.0.1"])):
        with tempfile.TemporaryDirectory() as tmp:
            err_file = Path(tmp) / "server.err"
            with served(src, bind, err_file) as (proc, client):
                endpoint = client.sock.getsockopt_string(zmq.LAST_ENDPOINT)
                rtt = round_trips(client)
                cost = refusal_cost(proc, client, err_file)
            results[label] = {"endpoint": endpoint.split(":", 1)[0], "rtt": rtt, **cost}
            print(label, json.dumps(results[label]), flush=True)
    return results


def render(runs: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| code | endpoints | ping p50 / p99 | status p50 / p99 | refused 100 B: server CPU, "
        "stderr | refused 1 MB: server CPU, stderr | nesting frame |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, results in runs.items():
        for label, r in results.items():
            ping, status = r["rtt"]["ping"], r["rtt"]["status"]
            small, big = r["100 B"], r["1 MB"]
            nest = (
                "answered, run goes on"
                if r["nesting answered"] and r["alive after nesting"]
                else ("server died" if not r["alive after nesting"] else "no answer")
            )
            lines.append(
                f"| {code} | {label} ({r['endpoint']}) | {ping[0]:.0f} / {ping[1]:.0f} µs | "
                f"{status[0]:.0f} / {status[1]:.0f} µs | {small['cpu_us']:.0f} µs, "
                f"{small['stderr_bytes']:.0f} B | {big['cpu_us']:.0f} µs, "
                f"{big['stderr_bytes']:.0f} B | {nest} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", action="append", default=[], help="LABEL=PATH of another src")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, Any]] = {}
    for spec in args.src:
        label, path = spec.split("=", 1)
        runs[label] = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--json"],
                env={k: v for k, v in os.environ.items() if k != "PLEXA_RUNTIME_DIR"}
                | {"PYTHONPATH": path},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[-1]
        )
    runs[f"this{_report.revision()}"] = measure(None)
    table = render(runs)
    print(table)
    if args.write:
        load = os.getloadavg()[0]
        text = (
            f"{BEGIN}\n## Control plane: transports and refusals\n\n"
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
            f"{_report.machine(('pyzmq', 'plexa'))}; 1-minute load average {load:.1f} at the end "
            "(the machine is shared: compare rows measured together, not with other tables).\n\n"
            f"{table}\n\n`python benchmarks/control_guard.py --write` "
            "(see its docstring for the method).\n{END}"
        ).replace("{END}", END)
        _report.write_section(text, BEGIN, END)
    return 0


if __name__ == "__main__":
    own_root = "PLEXA_RUNTIME_DIR" not in os.environ
    os.environ.setdefault("PLEXA_RUNTIME_DIR", tempfile.mkdtemp(prefix="plexa-guard-"))
    try:
        if "--json" in sys.argv:
            sys.argv.remove("--json")
            print(json.dumps(measure(None)))
            code = 0
        else:
            code = main()
    finally:
        if own_root:
            with contextlib.suppress(OSError):
                os.rmdir(os.environ["PLEXA_RUNTIME_DIR"])
    sys.exit(code)
