"""A full log filesystem loses log lines (counted, one warning), never the run."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import started
from plexa import loads
from plexa.nexus.attach import Listener

PIPE = """
actors:
  talk: {class: "actors:Chatty", options: {every: 0.002}}
"""


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (root only; the test is skipped otherwise)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_log_filesystem_drops_lines_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tiny_tmpfs(tmp_path / "logs", "64k") as logs:
        monkeypatch.setenv("PLEXA_LOG_DIR", str(logs))
        events: list[tuple[str, Any]] = []
        with started(loads(PIPE, "full-log")) as nexus:
            nexus.attach(Listener(lambda kind, data: events.append((kind, data))))
            nexus.wait_until(lambda st: nexus.logs.dropped > 100, 60)
            warnings = [d for k, d in events if k == "warning"]
            assert len(warnings) == 1, warnings  # one warning, not one per line
            assert "no space left" in warnings[0]["error"]
            before = nexus.status()["actors"]["talk"]
            assert before["state"] == "running" and "failure" not in before
            assert events[-1][0] == "log"  # lines still reach listeners
            run_dir = nexus.paths.run_dir
        assert not nexus.failures
        assert not run_dir.exists()  # quit cleaned up in spite of the full disk
