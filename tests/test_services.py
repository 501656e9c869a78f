"""Long computations as services, with real processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import plexa
from conftest import started
from plexa import ActorState, Nexus
from plexa.data.store import Store
from plexa.nexus.attach import Listener

LONG = """
    actors:
      fit: {{class: "actors:LongFit", options: {{chunk_s: 0.001}}, {extra}}}
"""


def spec_of(
    extra: str = "progress_delta: 0.2, improved_delta: 0.3", settings: str = ""
) -> plexa.PipelineSpec:
    text = textwrap.dedent(LONG.format(extra=extra))
    if settings:
        text = f"settings: {settings}\n" + text
    return plexa.loads(text, source="services.yaml")


def progress_of(nexus: Nexus) -> float:
    report = nexus.latest.get("fit", {}).get("progress")
    return float(report["done"]) if report else 0.0


def test_pause_holds_a_long_step_at_its_next_safe_point_and_resume_continues() -> None:
    with started(spec_of()) as nexus:
        nexus.wait_until(lambda st: progress_of(nexus) > 50, 10)
        t0 = time.monotonic()
        nexus.pause()
        assert time.monotonic() - t0 < 0.1
        held = nexus.invoke("fit", "where")
        nexus.poll(0.3)
        assert nexus.invoke("fit", "where") == held
        nexus.resume()
        nexus.wait_until(lambda st: progress_of(nexus) > held + 20, 10)
        assert nexus.invoke("fit", "where") > held  # continued, not restarted


def test_progress_carries_named_fields_into_the_status_and_its_events() -> None:
    from plexa.core.documents import ProgressEvent, Status

    events: list[dict[str, Any]] = []
    with started(spec_of()) as nexus:
        nexus.attach(Listener(lambda kind, data: events.append(data) if kind == "progress" else 0))
        nexus.wait_until(lambda st: progress_of(nexus) > 50 and len(events) > 1, 10)
        status = msgspec.convert(nexus.status(), Status)  # the typed document accepts it
    fields = status.actors["fit"].progress.fields  # type: ignore[union-attr]
    assert isinstance(fields, dict) and fields["phase"] == "fit"
    assert 0 < float(fields["loss"]) < 1 / 50
    event = msgspec.convert(events[-1], ProgressEvent)
    assert event.fields and event.fields["phase"] == "fit"


def test_abort_ends_the_work_reports_the_partial_result_and_leaves_the_actor_stopped() -> None:
    with started(spec_of()) as nexus:
        nexus.wait_until(lambda st: "improved" in nexus.latest.get("fit", {}), 10)
        nexus.abort()
        assert nexus.actors["fit"].state is ActorState.STOPPED
        nexus.poll(0.1)
        aborted = nexus.latest["fit"]["aborted"]
        assert aborted["partial"]["i"] % 25 == 0 and aborted["partial"]["i"] > 0
        assert aborted["score"] == float(aborted["partial"]["i"])


def test_progress_and_improved_arrive_no_more_often_than_their_deltas() -> None:
    events: dict[str, list[float]] = {"progress": [], "improved": []}
    with started(spec_of()) as nexus:
        nexus.attach(
            Listener(lambda kind, data: events[kind].append(data["t"]) if kind in events else None)
        )
        nexus.poll(2.0)
        seen = {kind: list(stamps) for kind, stamps in events.items()}  # the final flush at
        # stop may come sooner: the last report of a run is never held back
    for kind, delta in (("progress", 0.2), ("improved", 0.3)):
        stamps = seen[kind]
        assert len(stamps) >= 3, kind
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert min(gaps) >= delta * 0.95, (kind, min(gaps))


def test_a_sigkilled_fit_restarts_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXA_DATA_DIR", str(tmp_path))
    spec = spec_of("checkpoint_delta: 0.2, progress_delta: 0.05, restart: on-failure")
    with started(spec) as nexus:
        nexus.wait_until(lambda st: progress_of(nexus) > 400, 20)
        fit = nexus.actors["fit"]
        assert fit.proc is not None
        os.killpg(fit.proc.pid, signal.SIGKILL)
        nexus.wait_until(lambda st: fit.restarts == 1 and fit.state is ActorState.RUNNING, 10)
        after = nexus.invoke("fit", "where")
        assert after > 150, "the progress counter did not start from 0"


def test_set_checks_the_type_and_invoke_returns_values_or_the_remote_traceback() -> None:
    with started(spec_of()) as nexus:
        nexus.set_option("fit", "rate", 2.5)
        with pytest.raises(plexa.RemoteError, match="rate must be float, not str"):
            nexus.set_option("fit", "rate", "fast")
        with pytest.raises(plexa.RemoteError, match="'speed' is not an option"):
            nexus.set_option("fit", "speed", 1)
        assert isinstance(nexus.invoke("fit", "where"), int)
        with pytest.raises(plexa.RemoteError) as err:
            nexus.invoke("fit", "explode")
        assert "RuntimeError: kaboom" in str(err.value)
        assert "in explode" in err.value.traceback
        with pytest.raises(plexa.RemoteError, match=r"not a @plexa\.command"):
            nexus.invoke("fit", "setup")


def test_resume_gives_a_new_run_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXA_DATA_DIR", str(tmp_path))
    spec = spec_of("checkpoint_delta: 0.1")
    with started(spec) as nexus:
        nexus.wait_until(lambda st: progress_of(nexus) > 200, 20)
        nexus.stop()  # checkpoints on stop
        last = nexus.invoke("fit", "where")
    with started(spec, resume=True) as again:
        assert again.invoke("fit", "where") >= last
    with started(spec) as fresh:
        assert fresh.invoke("fit", "where") < last


_WRITER = """
import sys, numpy as np
from plexa.data.store import Store
store = Store(sys.argv[1], 1 << 28, create=True)
i = 0
while True:
    store.put({"i": i, "data": np.full(2_000_000, i, dtype=np.int64)}, key="fit")
    print(i, flush=True)
    i += 1
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints"
    for attempt in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(3 + attempt):
            proc.stdout.readline()
        proc.kill()  # almost surely in the middle of writing 16 MB
        proc.wait()
        with Store(path, 1 << 28) as store:
            saved = store.get("fit")
            assert (saved["data"] == saved["i"]).all()


def test_imap_in_an_actor_is_cancelled_by_abort() -> None:
    spec = plexa.loads(
        textwrap.dedent("""
            actors:
              m: {class: "actors:Mapper", options: {n: 1000}, workers: 2, progress_delta: 0.05}
        """),
        source="map.yaml",
    )
    with started(spec) as nexus:
        nexus.wait_until(
            lambda st: float(nexus.latest.get("m", {}).get("progress", {}).get("done", 0)) >= 4, 20
        )
        t0 = time.monotonic()
        nexus.abort()
        assert time.monotonic() - t0 < 2.0
        nexus.poll(0.2)
        done = nexus.latest["m"]["progress"]["done"]
        assert done < 1000
