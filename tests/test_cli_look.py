"""Looking inside a pipeline: ``plexa graph``, the link tap behind ``peek`` and ``hz``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import started, wait_for
from plexa import loads
from plexa.core.config import load
from plexa.data.tap import Tap, describe
from plexa.edges.graph import dot, mermaid, tree

ROOT = Path(__file__).resolve().parent.parent
IMAGING = ROOT / "examples" / "imaging.yaml"


def plexa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    return subprocess.run(
        [sys.executable, "-m", "plexa", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_graph_mermaid_draws_every_actor_and_link() -> None:
    result = plexa("graph", str(IMAGING), "--mermaid")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "flowchart LR\n"
        '    camera["camera<br/><small>FrameSource</small>"]\n'
        '    traces["traces<br/><small>RoiTraces</small>"]\n'
        '    monitor["monitor<br/><small>RateMonitor</small>"]\n'
        '    camera -- "frames → frames<br/>block/8" --> traces\n'
        '    traces -- "traces → traces<br/>latest/4" --> monitor\n'
    )


def test_graph_tree_and_dot_follow_the_links_and_live_rates_label_them() -> None:
    spec = load(IMAGING)
    text = tree(spec)
    assert text.splitlines()[:3] == [
        "imaging",
        "camera (FrameSource)",
        "    └── .frames -> traces.frames  block/8",
    ]
    status = {
        "actors": {"camera": {"state": "running"}},
        "links": {"camera.frames->traces.frames": {"rate": 100.0, "bytes_per_s": 5.2e7}},
    }
    assert "block/8  100/s 52.0 MB/s" in tree(spec, status)
    assert "camera (FrameSource)  [running]" in tree(spec, status)
    graph = dot(spec)
    assert graph.startswith('digraph "imaging" {') and '"camera" -> "traces"' in graph
    assert "100/s" in mermaid(spec, status)


def test_a_fan_in_actor_is_drawn_once() -> None:
    spec = loads(
        "actors:\n"
        "  a: {class: 'actors:Source'}\n"
        "  b: {class: 'actors:Source'}\n"
        "  s: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  a.out: [s.inp]\n"
        "  b.out: [s.inp]\n"
    )
    text = tree(spec)
    assert text.count("s (Sink)") == 2 and text.count("(above)") == 1


def test_messages_are_described_by_shape_dtype_and_range_or_a_short_repr() -> None:
    import numpy as np

    assert describe(np.arange(4, dtype=np.int16)) == (
        "array shape=(4,) dtype=int16 min=0 mean=1.5 max=3"
    )
    assert describe({"n": 1}) == "{'n': 1}"
    assert describe("x" * 500, width=10) == "'xxxxxx..."


@pytest.mark.slow
def test_a_tap_never_holds_back_a_block_producer_nor_changes_the_links_counters() -> None:
    count = 3000
    spec = loads(
        "actors:\n"
        f"  src: {{class: 'actors:Source', options: {{count: {count}, size: 4096}}}}\n"
        "  sink: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  src.out: {to: [sink.inp], policy: block, capacity: 2}\n"
    )
    nexus = started(spec)
    try:
        link = "src.out->sink.inp"
        with Tap(nexus.paths, spec, "src.out") as tap:
            # The tap takes nothing while the whole stream passes: its queue of one stays full.
            wait_for(
                lambda: nexus.status()["links"][link]["received"] == count,
                60,
                "every message to reach the sink past an idle tap",
            )
            final = nexus.status()["links"][link]
            assert (final["sent"], final["received"], final["dropped"], final["lost"]) == (
                count,
                count,
                0,
                0,
            )
            seen = tap.take()
            assert seen is not None and seen.seq == count - 1  # the newest replaced the rest
            assert seen.text.startswith("array shape=(512,) dtype=int64")
            assert tap.take() is None
    finally:
        report = nexus.quit()
    assert report.clean


@pytest.mark.slow
def test_peek_and_hz_print_a_running_links_messages_and_rate(tmp_path: Path) -> None:
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(
        "actors:\n"
        "  src: {class: 'actors:Source', options: {count: 100000000, rate_hz: 200}}\n"
        "  sink: {class: 'actors:Sink'}\n"
        "connections:\n"
        "  src.out: [sink.inp]\n"
    )
    name = f"look{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    server = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_for(lambda: '"running"' in plexa("ctl", name, "status", "--json").stdout, 30)
        peek = plexa("peek", name, "src.out", "--count", "2", "--interval", "0")
        assert peek.returncode == 0, peek.stderr
        lines = peek.stdout.splitlines()
        assert len(lines) == 2 and all("{'n': " in line for line in lines), lines
        hz = plexa("hz", name, "src.out", "--count", "1")
        assert hz.returncode == 0, hz.stderr
        rate = float(hz.stdout.split(":")[1].split("msg/s")[0].replace(",", ""))
        assert 50 < rate < 400, hz.stdout
        wrong = plexa("peek", name, "sink.nothing", "--count", "1")
        assert wrong.returncode == 1 and "no link leaves 'sink.nothing'" in wrong.stderr
    finally:
        plexa("ctl", name, "quit")
        server.wait(timeout=30)
