"""``plexa new``: the skeletons it writes pass their own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plexa.edges.scaffold import class_name, module_name

ROOT = Path(__file__).resolve().parent.parent


def plexa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plexa", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_names_become_a_module_and_a_class() -> None:
    assert (module_name("Frame Filter"), class_name("frame-filter")) == (
        "frame_filter",
        "FrameFilter",
    )
    assert module_name("RoiTraces") == "roi_traces"
    with pytest.raises(ValueError):
        module_name("3d")


def _pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
    )


def test_a_new_actor_passes_its_own_test_and_is_not_overwritten(tmp_path: Path) -> None:
    made = plexa("new", "actor", "frame filter", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"frame_filter.py", "test_frame_filter.py"}
    result = _pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    again = plexa("new", "actor", "frame_filter", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_a_new_pipeline_validates_and_passes_its_own_tests(tmp_path: Path) -> None:
    made = plexa("new", "pipeline", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "demo"
    assert {p.name for p in folder.iterdir()} == {"pipeline.yaml", "actors.py", "test_pipeline.py"}
    # the actors beside the file are found without PYTHONPATH, from any directory
    checked = plexa("validate", "demo/pipeline.yaml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout.strip()) == (0, "ok"), checked.stderr
    result = _pytest(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
