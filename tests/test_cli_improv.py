"""improv actors run unchanged but for the import line: store_loc, named links, use_watcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import plexa
from plexa.improv import Actor, RunManager
from plexa.testing import ActorHarness

DEMO = Path(__file__).resolve().parent / "improv_demo"


def test_improvs_constructor_arguments_and_setters_are_accepted() -> None:
    actor = Actor("Gen", "/dev/shm/store", method="spawn")
    assert (actor.name, actor.store_loc, actor.method) == ("Gen", "/dev/shm/store", "spawn")
    actor.addLink("extra", "a link")
    assert actor.getLinks() == {"extra": "a link"}
    with pytest.raises(TypeError, match="runStep"):
        RunManager("Gen", {}, {})


def test_named_links_become_ports_of_improv_actors_and_use_watcher_is_a_setting() -> None:
    spec = plexa.load(DEMO / "minimal.yaml")
    assert spec.actors["Processor"].inputs == ("q_in", "input_stim_queue")
    assert spec.settings.use_watcher is False and spec.record is None
    with pytest.raises(plexa.ConfigError, match="has no input 'input_stim_queue'"):
        plexa.loads(
            "actors:\n"
            "  src: {class: 'actors:Source'}\n"
            "  sink: {class: 'actors:Sink'}\n"
            "connections:\n"
            "  src.out: [sink.input_stim_queue]\n"
        )


def test_a_named_link_is_in_self_links_under_its_name() -> None:
    sys.path.insert(0, str(DEMO))
    try:
        from improv_actors.sample_processor import Processor  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEMO))
    harness = ActorHarness(Processor, name="Processor")
    assert set(harness.actor.links) == {"q_in", "q_out"}  # type: ignore[attr-defined]


def test_validate_accepts_improv_spelling_with_named_links() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "validate", str(DEMO / "minimal.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


@pytest.mark.slow
def test_improv_style_actors_run_with_store_loc_and_a_named_link(tmp_path: Path) -> None:
    # run from elsewhere, without PYTHONPATH: the config's folder is on the actors' path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = ["run", str(DEMO / "minimal.yaml"), "--duration", "3", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "plexa", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    links = json.loads(result.stdout)["links"]
    data = links["Generator.q_out->Processor.q_in"]
    assert data["received"] >= 50 and data["lost"] == 0
    assert links["Stim.q_out->Processor.input_stim_queue"]["received"] >= 3
