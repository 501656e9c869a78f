"""Worker jobs: real ``plexa server`` runs, real job processes, real ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import HERE, alive, assert_stays, plexa_server, wait_for
from plexa.core.jobs import JobInfo
from plexa.edges.client import connect
from plexa.errors import PlexaError, Timeout
from plexa.jobs import parse_args, read_config

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONPATH": str(HERE)}
PIPE = """
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 20}}
jobs:
  web: {module: plexa.examples.job_http, config: {greeting: hello}, restart: on-failure}
  late: {module: job_deaf, args: [--read-after, "0.6"], config_timeout: 2.0}
"""


def ctl(name: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plexa", "ctl", name, *words],
                          capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip


def jobs(name: str) -> dict[str, dict[str, Any]]:
    with connect(name) as c:
        return {j["name"]: j for j in c.request("jobs")}


@pytest.fixture
def run(tmp_path: Path) -> Iterator[str]:
    cfg = tmp_path / "jobs.yaml"
    cfg.write_text(PIPE)
    with plexa_server(cfg, prefix="j") as server:
        wait_for(lambda: {"web", "late"} <= set(jobs(server.name)), 20, "the file's jobs")
        yield server.name


def _get(port: int) -> dict[str, Any]:
    """The example job's answer (it binds its port just after reading its config)."""
    got: list[dict[str, Any]] = []

    def answered() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                got.append(json.loads(r.read()))
        except OSError:
            return False
        return True

    wait_for(answered, 20, f"an answer on port {port}")
    return got[0]


def test_a_files_job_reads_its_config_and_serves_on_the_port_it_was_given(run: str) -> None:
    wait_for(lambda: jobs(run)["web"]["state"] == "running", 20, "web running")
    web = jobs(run)["web"]
    assert web["module"] == "plexa.examples.job_http" and web["restarts"] == 0
    assert len(web["guid"]) == 16 and web["session"] and web["pid"]
    answer = _get(web["port"])
    assert answer == {"guid": web["guid"], "port": web["port"], "config": {"greeting": "hello"}}
    conns = psutil.Process(web["pid"]).net_connections()
    assert any(c.laddr.port == web["port"] and c.status == "LISTEN" for c in conns)
    # a job slower than nothing but within its deadline (0.6 s of 2 s) is not failed
    wait_for(lambda: jobs(run)["late"]["state"] == "running", 20, "late running")
    assert_stays(lambda: jobs(run)["late"]["state"] == "running", 2.0, "late stays running")
    logs = ctl(run, "logs", "50").stdout
    assert f"job {web['guid']} serving on port {web['port']}" in logs
    assert "job:late" in logs and "config: None" in logs


def test_launch_with_a_config_file_lists_the_job_and_quit_ends_it(
    run: str, tmp_path: Path
) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("greeting: from a file\nn: 3\n")
    r = ctl(run, "launch", "plexa.examples.job_http", "extra", "--config", str(conf), "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["name"] == "extra" and row["state"] in ("starting", "running")
    wait_for(lambda: jobs(run)["extra"]["state"] == "running", 20, "extra running")
    assert _get(row["port"])["config"] == {"greeting": "from a file", "n": 3}
    ports = [j["port"] for j in jobs(run).values()]
    assert len(set(ports)) == len(ports), "no two jobs share a port"
    table = ctl(run, "jobs").stdout
    assert table.split()[:5] == ["name", "guid", "port", "module", "state"]
    assert "extra" in table and "plexa.examples.job_http" in table
    bad = ctl(run, "launch", "not a module")
    assert bad.returncode == 1 and "is not a module name" in bad.stderr
    again = ctl(run, "launch", "plexa.examples.job_http", "extra")
    assert again.returncode == 1 and "is running" in again.stderr
    pids = [j["pid"] for j in jobs(run).values() if j["pid"]]
    assert len(pids) == 3
    with connect(run) as c:
        c.request("quit")
    wait_for(lambda: not any(alive(p)
                             for p in pids), 20, "every job gone after quit")  # fmt: skip


def test_a_job_that_does_not_read_its_config_in_time_fails_with_the_reason(run: str) -> None:
    sub = connect(run)
    sub.subscribe(("job",))
    r = ctl(run, "launch", "job_deaf", "deaf", "--json")
    assert r.returncode == 0, r.stderr
    pid = json.loads(r.stdout)["pid"]
    wait_for(lambda: jobs(run)["deaf"]["state"] == "failed", 10, "deaf failed")
    deaf = jobs(run)["deaf"]
    assert deaf["reason"] == "did not read its configuration from standard input within 3 s"
    assert deaf["pid"] is None and not psutil.pid_exists(pid)
    with sub:  # every change of state was a typed ``job`` event
        states = []
        for event in sub.events(timeout=2.0):
            doc = event.document()
            assert isinstance(doc, JobInfo)
            if doc.name == "deaf":
                states.append(doc.state.value)
            if "failed" in states:
                break
    assert states == ["starting", "failed"]


def test_a_crashed_job_is_restarted_by_its_policy_with_the_same_guid_and_port(run: str) -> None:
    wait_for(lambda: jobs(run)["web"]["state"] == "running", 20, "web running")
    before = jobs(run)["web"]
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: jobs(run)["web"]["restarts"] == 1
             and jobs(run)["web"]["state"] == "running", 20, "web restarted")  # fmt: skip
    after = jobs(run)["web"]
    assert (after["guid"], after["port"]) == (before["guid"], before["port"])
    assert after["pid"] != before["pid"]
    assert _get(after["port"])["guid"] == before["guid"]
    late = jobs(run)["late"]  # restart: never
    os.kill(late["pid"], signal.SIGKILL)
    wait_for(lambda: jobs(run)["late"]["state"] == "failed", 10, "late failed for good")
    assert jobs(run)["late"]["reason"] == "killed by SIGKILL"


def test_jobs_are_gone_after_the_nexus_is_killed_and_plexa_cleanup_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "stubborn.yaml"
    cfg.write_text(PIPE.replace('"0.6"]', '"0.1", --ignore-term]'))
    with plexa_server(cfg, prefix="k") as server:
        wait_for(lambda: jobs(server.name)["late"]["state"] == "running", 20, "late running")
        pid = jobs(server.name)["late"]["pid"]
        server.proc.kill()
        server.proc.wait(10)
        assert_stays(lambda: psutil.pid_exists(pid), 0.5, "the stubborn job outlives its nexus")
        other = tmp_path / "other-root"
        other.mkdir(mode=0o700)
        elsewhere = {**ENV, "PLEXA_RUNTIME_DIR": str(other)}
        r = subprocess.run([sys.executable, "-m", "plexa", "cleanup"], capture_output=True,
                           text=True, env=elsewhere, timeout=60)  # fmt: skip
        assert r.returncode == 0 and str(pid) not in r.stdout, r.stdout + r.stderr
        assert alive(pid), "a cleanup with another runtime root left this root's run alone"
        r = subprocess.run([sys.executable, "-m", "plexa", "cleanup"], capture_output=True,
                           text=True, env=ENV, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"killed process {pid}" in r.stdout
        wait_for(lambda: not psutil.pid_exists(pid), 10, "the job gone")


def test_the_job_helpers_parse_arguments_and_read_with_a_deadline() -> None:
    args = parse_args(["--guid", "g1", "--port", "8080", "--x", "1"])
    assert (args.guid, args.port, args.rest) == ("g1", 8080, ["--x", "1"])
    r, w = os.pipe()
    try:
        with pytest.raises(Timeout, match=r"within 0\.2 s"):
            read_config(timeout=0.2, fd=r)
        os.write(w, b'{"a": [1, 2]}\n')
        assert read_config(timeout=1, fd=r) == {"a": [1, 2]}
        os.write(w, b"not json\n")
        with pytest.raises(PlexaError, match="not JSON"):
            read_config(timeout=1, fd=r)
    finally:
        os.close(r)
        os.close(w)


def test_the_jobs_section_is_checked_with_the_key_and_the_reason() -> None:
    from plexa.core.config import loads
    from plexa.errors import ConfigError

    head = 'actors:\n  a: {class: "actors:Idle"}\n'
    spec = loads(head + "jobs:\n  w: {module: pkg.job, config: {x: 1}, restart: always}\n")
    (job,) = spec.jobs
    assert (job.name, job.module, job.config, job.restart) == ("w", "pkg.job", {"x": 1}, "always")
    assert job.config_timeout == 3.0
    with pytest.raises(ConfigError) as err:
        loads(head + "jobs:\n  w: {module: 'no good'}\n  v: {module: m, restrat: always}\n"
              "  u: {module: m, restart: sometimes}\n  t: 3\n")
    text = str(err.value)
    assert "jobs.w.module" in text and "jobs.v.restrat" in text and "restart" in text
    assert "jobs.u" in text and "sometimes" in text and "jobs.t" in text
