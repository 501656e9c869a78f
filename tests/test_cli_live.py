"""What ``plexa run`` prints while it runs: failure and restart lines, the traceback once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plexa import loads
from plexa.edges.live import EventLines

ROOT = Path(__file__).resolve().parent.parent
SPEC = loads(
    "actors:\n"
    "  bad: {class: 'actors:Fails', restart: on-failure, max_restarts: 2, backoff: 0.05}\n"
    "  ok: {class: 'actors:Sink'}\n"
    "connections:\n"
    "  bad.out: [ok.inp]\n"
)


def test_failure_and_restart_events_become_one_line_each_and_the_traceback_once() -> None:
    lines: list[str] = []
    show = EventLines(SPEC, lines.append)
    failure = {
        "actor": "bad",
        "kind": "exception",
        "phase": "run",
        "error": "ValueError: boom in run",
        "traceback": "Traceback (most recent call last):\nValueError: boom in run\n",
    }
    show("failure", failure)
    show("state", {"actor": "bad", "state": "restarting", "in_s": 0.4})
    show("restarted", {"actor": "bad", "restarts": 1})
    show("failure", failure)
    show("state", {"actor": "bad", "state": "restarting", "in_s": 0.8})
    show("state", {"actor": "bad", "state": "failed"})
    show("metrics", {"run": {}})
    text = [line[9:] for line in lines if line[:2].isdigit()]  # without the time stamps
    assert text == [
        "bad failed (exception in run): ValueError: boom in run",
        "bad restart 1/2 in 0.4 s",
        "bad restarted",
        "bad failed (exception in run): ValueError: boom in run",
        "bad restart 2/2 in 0.8 s",
        "bad failed for good (2 restarts)",
    ]
    assert sum("Traceback" in line for line in lines) == 1


@pytest.mark.slow
def test_plexa_run_prints_failures_and_restarts_while_running(tmp_path: Path) -> None:
    cfg = tmp_path / "fail.yaml"
    cfg.write_text(
        "actors:\n"
        "  bad: {class: 'actors:Fails', restart: on-failure, max_restarts: 2, backoff: 0.05}\n"
        "  ok: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  bad.out: [ok.inp]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "run", str(cfg), "--duration", "90"],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        cwd=ROOT,
    )
    err = result.stderr
    assert result.returncode == 1, err  # failed for good after two restarts: the run ends
    restart = err.index(" bad restart 1/2 in ")
    assert err.index(" bad failed (exception in run): ValueError: boom in run") < restart
    assert " bad restart 2/2 in " in err and " bad failed for good (2 restarts)" in err
    # printed while running: before the final table, which ends the run
    assert restart < err.index("actor  ") < err.index("log: ")
    assert err.count("Traceback (most recent call last)") == 1
