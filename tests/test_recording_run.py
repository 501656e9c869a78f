"""Recording a live run: bit-exact frames, kill -9 of the recorder, a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plexa
import plexa.recording
from conftest import started, wait_for

EXAMPLE = Path(__file__).parent.parent / "examples" / "imaging.yaml"


def _imaging(record: str, rate_hz: float = 100.0) -> plexa.PipelineSpec:
    text = EXAMPLE.read_text().replace("rate_hz: 100", f"rate_hz: {rate_hz}")
    return plexa.loads(text + "\n" + record + "\n", str(EXAMPLE))


def _bank() -> np.ndarray:
    """The frames FrameSource sends (its default seed), before it stamps the frame number."""
    return np.random.default_rng(0).integers(0, 4096, size=(4, 512, 512), dtype=np.uint16)


def _expected(seq: int, bank: np.ndarray) -> np.ndarray:
    frame = bank[seq % 4].copy()
    frame.flat[0] = seq % 65536
    return frame


def _recorder(status: dict[str, Any]) -> dict[str, Any]:
    return status["actors"]["recorder"]


def _written(status: dict[str, Any]) -> float:
    progress = _recorder(status).get("progress")
    return progress["done"] if progress else 0.0


@pytest.mark.slow
def test_three_seconds_of_the_imaging_example_read_back_bit_exact_with_sequence_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "imaging.mcap"
    spec = _imaging(f"record: {{path: '{path}'}}")
    with started(spec) as nexus:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            nexus.poll(0.1)
        nexus.stop()
        status = nexus.status()
        sent = status["links"]["camera.frames->recorder.camera.frames"]["sent"]
        counters = _recorder(status)["progress"]["fields"]  # flushed at stop
    traces_sent = status["links"]["traces.traces->recorder.traces.traces"]["sent"]
    assert counters["written"] == sent + traces_sent and counters["not_written"] == 0
    assert counters["dropped"] == 0 and counters["path"] == str(path)
    assert counters["bytes"] >= sent * 512 * 512 * 2 and counters["mb_per_s"] > 0
    bank = _bank()
    with plexa.recording.open(path) as rec:
        assert rec.complete
        assert rec.metadata["plexa"]["pipeline"] == "imaging"
        frames = list(rec.messages(["camera.frames"]))
        traces = list(rec.messages(["traces.traces"]))
        assert [m.sequence for m in frames] == list(range(sent))
        for msg in frames:
            assert np.array_equal(msg.obj, _expected(msg.sequence, bank)), msg.sequence
        times = [m.time for m in frames]
    assert sent >= 150  # 100 Hz for 3 s, on a loaded machine
    assert times == sorted(times) and abs(time.time_ns() - times[-1]) < 60e9
    assert [m.sequence for m in traces] == list(range(len(traces))) and len(traces) == sent
    assert all(m.obj.dtype == np.float32 and m.obj.shape == (16,) for m in traces)


@pytest.mark.slow
def test_kill_9_of_the_recorder_leaves_a_file_readable_up_to_its_last_complete_chunk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "killed.mcap"
    spec = _imaging(f"record: {{path: '{path}', links: [camera.frames], chunk_size: 2MiB}}")
    with started(spec) as nexus:
        nexus.wait_until(lambda s: _written(s) >= 40, 30.0)
        written = _written(nexus.status())
        os.kill(_recorder(nexus.status())["pid"], signal.SIGKILL)
        # the supervisor restarts the recorder, which starts a new file next to this one
        nexus.wait_until(lambda s: _recorder(s)["restarts"] == 1, 30.0)
        nexus.wait_until(lambda s: _recorder(s)["state"] == "running", 30.0)
        assert (tmp_path / "killed-1.mcap").exists()
        taken = _recorder(nexus.status())["msgs_in"]  # the new file gets frames before quit
        nexus.wait_until(lambda s: _recorder(s)["msgs_in"] >= taken + 5, 30.0)
    bank = _bank()
    with plexa.recording.open(path) as rec:
        assert not rec.complete
        seqs = [m.sequence for m in rec]
        assert all(np.array_equal(m.obj, _expected(m.sequence, bank)) for m in rec)
    assert seqs == list(range(len(seqs)))
    assert len(seqs) >= written  # frames go out as they come: each is a chunk of its own
    with plexa.recording.open(tmp_path / "killed-1.mcap") as rec:
        assert rec.complete and len(list(rec)) > 0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (needs root: skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_recording_with_an_event_and_the_run_goes_on(
    small_tmpfs: Path,
) -> None:
    path = small_tmpfs / "full.mcap"
    spec = _imaging(f"record: {{path: '{path}', links: [camera.frames], chunk_size: 1MiB}}")
    logs: list[str] = []
    with started(spec, on_log=lambda actor, rec: logs.append(f"{actor}: {rec.message}")) as nx:
        nx.wait_until(
            lambda s: "STOPPED" in _recorder(s).get("progress", {}).get("message", ""), 30.0
        )
        before = nx.status()
        traced = before["links"]["camera.frames->traces.frames"]["received"]
        nx.wait_until(
            lambda s: s["links"]["camera.frames->traces.frames"]["received"] >= traced + 50, 30.0
        )
        after = nx.status()
        assert after["run"]["state"] == "running"
        assert _recorder(after)["state"] == "running" and _recorder(after)["restarts"] == 0
        link = after["links"]["camera.frames->recorder.camera.frames"]
        assert (
            link["received"] > before["links"]["camera.frames->recorder.camera.frames"]["received"]
        )
        fields = _recorder(after)["progress"]["fields"]
        assert "full" in fields["error"] and fields["not_written"] > 0
    wait_for(lambda: any("the disk is full" in line for line in logs), 5.0, "the error event")
    assert any(line.startswith("recorder: ") and "the run goes on" in line for line in logs)
    with plexa.recording.open(path) as rec:
        seqs = [m.sequence for m in rec]
    assert 4 <= len(seqs) <= 12 and seqs == list(range(len(seqs)))


@pytest.mark.slow
def test_recording_is_stopped_and_started_again_on_a_live_run(tmp_path: Path) -> None:
    path = tmp_path / "live.mcap"
    spec = _imaging(f"record: {{path: '{path}', links: [camera.frames], start: false}}")
    with started(spec) as nexus:
        nexus.poll(0.3)
        assert not path.exists()
        stats = nexus.invoke("recorder", "record", ["start"])
        assert stats["path"] == str(path)
        nexus.wait_until(lambda s: _written(s) >= 10, 30.0)
        stats = nexus.invoke("recorder", "record", ["stop"])
        first = stats["written"]
        with plexa.recording.open(path) as rec:
            assert rec.complete and len(list(rec)) == first
        stats = nexus.invoke("recorder", "record", ["start"])
        assert stats["path"] == str(tmp_path / "live-1.mcap")
        nexus.wait_until(lambda s: _written(s) >= first + 10, 30.0)
    with plexa.recording.open(tmp_path / "live-1.mcap") as rec:
        seqs = [m.sequence for m in rec]
    assert rec.complete and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] > first
