"""Runs after they end: logs and reports by run name, ``plexa list --all``, pruning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plexa.core.paths import log_dir, parse_run_file, run_log, run_report
from plexa.edges.cli_runs import parse_log_line
from plexa.nexus.history import finished_runs, latest, prune
from plexa.nexus.logs import format_log

ROOT = Path(__file__).resolve().parent.parent


def plexa(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run(
        [sys.executable, "-m", "plexa", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_run_files_are_named_by_run_name_and_id_and_parse_back() -> None:
    assert run_log("fit2", "0a1b2c3d") == log_dir() / "fit2-0a1b2c3d.log"
    assert parse_run_file(run_report("my-run", "0a1b2c3d")) == ("my-run", "0a1b2c3d")
    assert parse_run_file(Path("notes.log")) is None
    assert parse_run_file(Path("x-zzzzzzzz.log")) is None


def test_a_log_line_parses_back_into_its_entry() -> None:
    entry = {"t": 1700000000.25, "actor": "cam", "level": 30, "logger": "stderr", "message": "a: b"}
    assert parse_log_line(format_log(entry)) == entry
    assert parse_log_line("  File 'x.py', line 3") is None


def test_old_runs_are_pruned_beyond_the_newest_ones_and_by_age(tmp_path: Path) -> None:
    now = time.time()
    for i, run_id in enumerate(("00000001", "00000002", "00000003", "00000004")):
        for suffix in (".log", ".report.json"):
            path = tmp_path / f"demo-{run_id}{suffix}"
            path.write_text("{}")
            os.utime(path, (now - 100 + i, now - 100 + i))
    old = tmp_path / "old-0000000a.log"
    old.write_text("")
    os.utime(old, (now - 40 * 86400, now - 40 * 86400))
    (tmp_path / "unrelated.txt").write_text("")
    removed = prune(keep=3, days=30, directory=tmp_path)
    assert sorted(p.name for p in removed) == [
        "demo-00000001.log",
        "demo-00000001.report.json",
        "old-0000000a.log",
    ]
    assert [r.run_id for r in finished_runs(tmp_path)] == ["00000002", "00000003", "00000004"]
    assert (tmp_path / "unrelated.txt").exists()
    found = latest("demo", tmp_path)
    assert found is not None and found.run_id == "00000004"


def test_a_starting_run_prunes_old_runs_but_never_a_live_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import started
    from plexa import Nexus, loads

    monkeypatch.setenv("PLEXA_LOG_KEEP", "1")
    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    stale = [logs / f"stale-0000000{i}.log" for i in range(3)]
    for i, path in enumerate(stale):
        path.write_text("")
        os.utime(path, (time.time() - 3600 + i, time.time() - 3600 + i))
    spec = loads('actors: {a: {class: "actors:Chatty"}}', "live")
    with started(spec) as first:
        first.wait_until(lambda st: first.log_path.exists(), 10)
        for path in stale:  # a newer file than the live run's: the live one is beyond KEEP
            path.touch()
        with Nexus(loads('actors: {a: {class: "actors:Idle"}}', "second")) as second:
            second.start()
            assert first.log_path.exists(), "a live run's log was pruned"
            assert sum(p.exists() for p in stale) <= 1


@pytest.mark.slow
def test_logs_report_and_list_work_on_a_finished_run_by_its_name(tmp_path: Path) -> None:
    name = f"done{os.getpid()}"
    ran = plexa("run", "examples/minimal.yaml", "--duration", "1", "--name", name, "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    run_id = summary["run"]["id"]
    assert run_log(name, run_id).exists() and run_report(name, run_id).exists()

    logs = plexa("logs", name)
    assert logs.returncode == 0, logs.stderr
    assert "Completed setup for Generator" in logs.stdout
    entries = json.loads(plexa("logs", name, "--json").stdout)
    assert {"t", "actor", "level", "logger", "message"} == set(entries[0])

    report = json.loads(plexa("report", name, "--json").stdout)
    run = report["run"]
    assert (run["name"], run["id"], run["clean"], run["failed"]) == (name, run_id, True, False)
    assert set(report["actors"]) == set(summary["actors"])
    assert plexa("report", name).stdout.startswith(f"run {name} ({run_id}): clean")

    listed = json.loads(plexa("list", "--all", "--json").stdout)
    mine = [r for r in listed if r["id"] == run_id]
    assert len(mine) == 1 and mine[0]["state"] == "clean" and mine[0]["name"] == name
    assert run_id not in plexa("list").stdout

    missing = plexa("logs", "never-ran-here")
    assert missing.returncode == 1 and "no run named 'never-ran-here'" in missing.stderr


@pytest.mark.slow
def test_a_failed_run_lists_as_failed_and_its_report_carries_the_traceback(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "fail.yaml"
    cfg.write_text(
        "actors:\n"
        "  bad: {class: 'actors:Fails', options: {phase: run}}\n"
        "  ok: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  bad.out: [ok.inp]\n"
    )
    name = f"failed{os.getpid()}"
    ran = plexa("run", str(cfg), "--duration", "20", "--name", name)
    assert ran.returncode == 1
    assert f"report: {log_dir()}/{name}-" in ran.stderr
    text = plexa("report", name).stdout
    assert "exception in run: ValueError: boom in run" in text and "Traceback" in text
    listed = json.loads(plexa("list", "--all", "--json").stdout)
    assert [r["state"] for r in listed if r["name"] == name] == ["failed"]


def test_logs_follow_prints_new_records_live_and_ends_with_the_run(tmp_path: Path) -> None:
    import threading

    from conftest import plexa_server, wait_for
    from plexa.edges.client import connect

    cfg = tmp_path / "chatty.yaml"
    cfg.write_text('actors:\n  talk: {class: "actors:Chatty", options: {every: 0.05}}\n')
    with plexa_server(cfg, prefix="follow") as run:
        with connect(run.name) as c:
            c.request("setup")
            c.request("run")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        follow = subprocess.Popen(
            [sys.executable, "-m", "plexa", "logs", run.name, "--follow", "--lines", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")))  # type: ignore[union-attr]
        reader.start()
        try:
            numbers = lambda: [int(x.split("line ")[1].split()[0]) for x in lines if "line " in x]  # noqa: E731
            wait_for(lambda: len(numbers()) >= 20, 30, "twenty live records")
            got = numbers()
            assert got == list(range(got[0], got[0] + len(got))), "records lost or reordered"
            assert all(" talk " in x for x in lines if "line " in x)
        finally:
            with connect(run.name) as c:
                c.request("quit")
        wait_for(lambda: follow.poll() is not None, 15, "logs --follow to end with the run")
        reader.join(5)
    assert follow.returncode == 0, follow.stderr.read()  # type: ignore[union-attr]
