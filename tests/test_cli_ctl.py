"""``plexa ctl`` and the command line's surface: help, flags, --version, --json, arguments."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_for
from plexa.core import protocol as proto
from plexa.edges.cli_ctl import COMMANDS, CtlUsage, parse, request_of

ROOT = Path(__file__).resolve().parent.parent
PIPE = """
settings: {on_failure: stop}
actors:
  src: {class: "actors:Source", options: {count: 100000000, rate_hz: 200}}
  sink: {class: "actors:Sink"}
  fit: {class: "actors:LongFit", restart: on-failure}
connections:
  src.out: [sink.inp]
"""


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


@pytest.fixture
def live(tmp_path: Path) -> Iterator[str]:
    """The name of a running ``plexa server`` (quit at the end)."""
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE)
    name = f"c{os.getpid()}{random.randrange(10**6)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(cfg), "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )

    def running() -> bool:
        result = plexa("ctl", name, "status", "--json")
        return result.returncode == 0 and json.loads(result.stdout)["run"]["state"] == "running"

    try:
        wait_for(running, 30, "the server to run")
        yield name
    finally:
        if proc.poll() is None:
            plexa("ctl", name, "quit")
        proc.communicate(timeout=30)


def test_ctl_help_lists_every_command_with_its_syntax_and_an_example() -> None:
    result = plexa("ctl", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for command in (*proto.COMMANDS, "report"):
        assert command in COMMANDS
        syntax = f"{command} {COMMANDS[command].syntax}".strip()
        assert any(line.strip().startswith(syntax + "  ") for line in lines), syntax
    for command in ("set", "invoke", "kill", "revive", "abort", "logs"):
        assert any(line.strip().startswith(f"plexa ctl imaging {command} ") for line in lines)
    top = plexa("--help").stdout
    assert "ctl" in top and "abort" in top and "invoke" in top


def test_version_prints_the_package_version() -> None:
    from plexa import __version__

    result = plexa("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"plexa {__version__}")


def test_flags_are_shown_as_flags_in_help() -> None:
    for command in ("run", "list", "server"):
        text = plexa(command, "--help").stdout
        assert "--json" in text or "--hold" in text
        assert "<bool>" not in text, text


def test_extra_arguments_unknown_options_and_unknown_commands_are_errors() -> None:
    for argv in (
        ("status", "extra"),
        ("quit", "now"),
        ("set", "sink", "delay"),
        ("kill",),
        ("bogus",),
        ("status", "--jsn"),
        ("logs", "many"),
        ("pause", "--force"),
        ("record", "begin"),
        ("record", "stop", "--to", "x.mcap"),
        ("status", "--to"),
    ):
        with pytest.raises(CtlUsage):
            parse(["run1", *argv])
        result = plexa("ctl", "run1", *argv)
        assert result.returncode == 2, argv
        assert result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr


def test_values_are_json_when_they_parse_and_text_otherwise() -> None:
    a = parse(["r", "set", "sink", "delay", "0.5", "--timeout", "3"])
    assert request_of(a) == ("set", "sink", {"key": "delay", "value": 0.5})
    assert a.timeout == 3.0
    a = parse(["r", "invoke", "fit", "go", "[1, 2]", "fast", "-1", "--json"])
    assert request_of(a) == (
        "invoke",
        "fit",
        {"method": "go", "args": [[1, 2], "fast", -1], "timeout_s": 30.0},
    )
    assert a.as_json
    assert request_of(parse(["r", "pause"])) == ("pause", None, {})
    assert request_of(parse(["r", "record", "stop", "cam.frames"])) == (
        "record",
        None,
        {"action": "stop", "links": ["cam.frames"], "path": None, "timeout_s": 30.0},
    )
    here = request_of(parse(["r", "record", "start", "--to", "x.mcap"]))[2]["path"]
    assert here == os.path.join(os.getcwd(), "x.mcap")  # the client's folder, not the nexus's


def test_the_control_path_loads_neither_numpy_nor_typer_nor_rich() -> None:
    code = (
        "import sys, plexa.edges.cli_ctl, plexa.edges.client, plexa.edges.cli\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'typer', 'rich', 'psutil', 'yaml', 'textual'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow
def test_ctl_on_a_live_run_prints_tables_ok_and_the_plain_document(live: str) -> None:
    table = plexa("ctl", live, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"{live}  running")
    assert any(line.split()[:2] == ["actor", "state"] for line in lines)
    assert any(line.startswith("src.out->sink.inp  block") for line in lines)
    assert all(len(line) < 200 and "[" not in line[:1] for line in lines)

    doc = json.loads(plexa("ctl", live, "status", "--json").stdout)
    assert set(doc) == {"run", "actors", "links"}
    assert {"state", "restarts", "msgs_in", "rate_out"} <= set(doc["actors"]["sink"])
    assert {"policy", "sent", "dropped", "lost", "latency_p99_us"} <= set(
        doc["links"]["src.out->sink.inp"]
    )

    ok = plexa("ctl", live, "set", "sink", "delay", "0")
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok"), ok.stderr
    where = plexa("ctl", live, "invoke", "fit", "where")
    assert where.returncode == 0 and int(where.stdout) >= 0
    paused = plexa("ctl", live, "pause", "sink")
    assert paused.stdout.strip().startswith("run running: ") and "sink paused" in paused.stdout
    assert plexa("ctl", live, "resume", "sink").returncode == 0
    assert plexa("ctl", live, "ping").stdout.startswith("pong (")
    assert "None" not in plexa("ctl", live, "set", "sink", "delay", "0").stdout
    refused = plexa("ctl", live, "set", "sink", "nope", "1")
    assert refused.returncode == 1 and refused.stderr.startswith("refused: ")


@pytest.mark.slow
def test_killing_an_actor_that_would_end_the_run_needs_force(live: str) -> None:
    refused = plexa("ctl", live, "kill", "sink")
    assert refused.returncode == 1
    assert "--force" in refused.stderr and "ends the run" in refused.stderr
    doc = json.loads(plexa("ctl", live, "status", "--json").stdout)
    assert doc["actors"]["sink"]["state"] == "running"
    restartable = plexa("ctl", live, "kill", "fit")
    assert restartable.returncode == 0, restartable.stderr
    forced = plexa("ctl", live, "kill", "sink", "--force")
    assert forced.returncode == 0, forced.stderr


def test_the_tui_without_textual_is_a_one_line_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    import typer

    from plexa.edges import cli_app

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "textual" else real(name)
    )
    with pytest.raises(typer.Exit) as exited:
        cli_app._need_textual()
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err == (
        "error: the terminal UI needs textual: pip install 'plexa[tui]'\n"
    )
