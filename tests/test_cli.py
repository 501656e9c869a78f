"""The ``plexa`` command, run as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import alive, plexa_shm, wait_for
from plexa.edges.client import connect
from plexa.errors import PlexaError

ROOT = Path(__file__).resolve().parent.parent
PLEXA = [sys.executable, "-m", "plexa"]


def plexa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLEXA, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_validate_prints_ok_for_the_examples() -> None:
    for name in ("imaging.yaml", "minimal.yaml"):
        result = plexa("validate", f"examples/{name}")
        assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_validate_names_file_line_and_key_and_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "actors:\n"
        "  camera: {class: 'plexa.examples.imaging:FrameSource'}\n"
        "  traces: {class: 'plexa.examples.imaging:RoiTraces'}\n"
        "connections:\n"
        "  camera.frame: [traces.frames]\n"
    )
    result = plexa("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{bad}:5" in result.stderr
    assert "did you mean 'frames'" in result.stderr


def test_run_json_accounts_for_every_frame() -> None:
    result = plexa("run", "examples/imaging.yaml", "--duration", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["run"]["state"] == "stopped"
    assert set(summary["actors"]) == {"camera", "traces", "monitor"}
    frames = summary["links"]["camera.frames->traces.frames"]
    assert frames["sent"] > 50
    for link in summary["links"].values():
        assert link["sent"] == link["received"] + link["dropped"]
        assert link["lost"] == 0
    for actor in summary["actors"].values():
        assert {"state", "pid", "restarts", "msgs_in", "msgs_out", "rate_in", "rate_out"} <= set(
            actor
        )


def test_run_exits_1_and_prints_the_traceback_when_an_actor_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "fail.yaml"
    cfg.write_text(
        "actors:\n"
        "  bad: {class: 'actors:Fails', options: {phase: run}}\n"
        "  ok: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  bad.out: [ok.inp]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    result = subprocess.run(
        [*PLEXA, "run", str(cfg), "--duration", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "actor 'bad' failed (exception in run)" in result.stderr
    assert "ValueError: boom in run" in result.stderr


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PLEXA, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def _running_actor_pids(timeout: float = 20) -> list[int]:
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    pids: list[int] = []

    def ready() -> bool:
        for record in root.glob("*/run.json"):
            data = json.loads(record.read_text())
            if len(data["actors"]) == 3 and plexa_shm():
                pids[:] = list(data["actors"].values())
                return True
        return False

    wait_for(ready, timeout, "the run to start its actors")
    return pids


def test_ctrl_c_stops_the_run_cleanly() -> None:
    proc = _start("run", "examples/imaging.yaml", "--json")
    _running_actor_pids()

    def flowing() -> bool:
        try:
            with connect("imaging") as c:
                return bool(c.status()["actors"]["traces"]["msgs_in"] > 10)
        except PlexaError:
            return False

    wait_for(flowing, 30, "frames to flow")
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=30)
    assert proc.returncode == 0, errs
    summary = json.loads(out)
    assert summary["links"]["camera.frames->traces.frames"]["lost"] == 0


def test_kill_9_of_the_nexus_leaves_no_actor_and_cleanup_restores_shm() -> None:
    before = plexa_shm()
    proc = _start("run", "examples/imaging.yaml")
    pids = _running_actor_pids()
    proc.kill()
    proc.wait()
    start = time.monotonic()
    wait_for(
        lambda: (
            not any(alive(p) for p in pids)
        ),
        2.0,
        "actors to exit after the nexus died",
    )
    assert time.monotonic() - start <= 2.0
    result = plexa("cleanup")
    assert result.returncode == 0
    assert "removed" in result.stdout
    assert plexa_shm() == before
    assert "nothing to clean up" in plexa("cleanup").stdout


def _run_marks(root: str) -> list[int]:
    """Pids of this user's processes marked with a run under runtime root ``root``."""
    want = f"PLEXA_RUN_DIR={root}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if any(var.startswith(want) for var in fh.read().split(b"\0")):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_run_of_a_bad_file_exits_2_and_leaves_no_run_behind(tmp_path: Path) -> None:
    """``plexa run`` starts its fork server before it reads the file (plexa.nexus.prestart);
    a file it then refuses leaves no process, run directory or shared memory (the last two:
    the no_leftovers fixture)."""
    root = os.environ["PLEXA_RUNTIME_DIR"]
    before = set(_run_marks(root))
    bad = tmp_path / "bad.yaml"
    bad.write_text("actors:\n  a: {class: 'plexa.examples.imaging:NoSuchActor'}\n")
    result = plexa("run", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "NoSuchActor" in result.stderr
    wait_for(lambda: set(_run_marks(root)) <= before, 5.0, "the fork server to be gone")


def test_the_nexus_of_plexa_run_loads_neither_typer_nor_pydantic_nor_rich() -> None:
    """Together ~0.3 s of CPU and ~14 MB in a process that lives as long as the run."""
    code = (  # plexa run leaves with os._exit: what it loaded is printed on the way out
        "import os, sys\n"
        "from plexa.edges.cli import main\n"
        "leave = os._exit\n"
        "def loaded(code):\n"
        "    found = {m.split('.')[0] for m in sys.modules} & {'typer', 'pydantic', 'rich'}\n"
        "    print(sorted(found), flush=True)\n"
        "    leave(code)\n"
        "os._exit = loaded\n"
        "main(['run', 'examples/minimal.yaml', '--duration', '0.3'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "stopped" in result.stderr  # the final status, printed without rich
