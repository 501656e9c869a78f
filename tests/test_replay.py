"""Replay: recorded sources played back into a pipeline, its results reproduced; info, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import plexa
import plexa.recording
from conftest import started, wait_for
from plexa.data.recording import RecordingWriter
from plexa.replay import replay_spec

EXAMPLE = Path(__file__).parent.parent / "examples" / "imaging.yaml"
FRAMES = 60


def _imaging(extra: str) -> plexa.PipelineSpec:
    text = EXAMPLE.read_text().replace("rate_hz: 100", f"rate_hz: 100, frames: {FRAMES}")
    text = text.replace("policy: latest, capacity: 4", "policy: block, capacity: 4")
    return plexa.loads(text + "\n" + extra + "\n", str(EXAMPLE))


def _run_until(spec: plexa.PipelineSpec, topic: str, count: int, timeout: float = 60.0) -> None:
    with started(spec) as nexus:
        link = f"{topic}->recorder.{topic}"
        nexus.wait_until(lambda s: s["links"][link]["received"] >= count, timeout)
        nexus.stop()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The imaging example (60 frames at 100 Hz, lossless links) recorded once."""
    path = tmp_path_factory.mktemp("rec") / "imaging.mcap"
    _run_until(_imaging(f"record: {{path: '{path}'}}"), "traces.traces", FRAMES)
    return path


def _messages(path: Path, topic: str) -> list[plexa.recording.Message]:
    with plexa.recording.open(path) as rec:
        return [m._replace(obj=m.obj.copy()) for m in rec.messages([topic])]


@pytest.mark.slow
def test_replaying_a_recording_through_its_pipeline_reproduces_its_results_exactly(
    recorded: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.mcap"
    spec = replay_spec(_imaging(f"record: {{path: '{again}'}}"), str(recorded), speed="max")
    assert spec.actors["camera"].target == "plexa.replay:Player"
    _run_until(spec, "traces.traces", FRAMES)
    before, after = _messages(recorded, "traces.traces"), _messages(again, "traces.traces")
    assert len(before) == len(after) == FRAMES
    for old, new in zip(before, after, strict=True):
        assert old.sequence == new.sequence
        assert np.array_equal(old.obj, new.obj)  # bit-exact float32 traces
    frames = _messages(again, "camera.frames")
    assert [m.sequence for m in frames] == list(range(FRAMES))


@pytest.mark.slow
@pytest.mark.parametrize("speed", [1.0, 0.5])
def test_replay_keeps_the_recorded_timing_scaled_by_speed(
    recorded: Path, tmp_path: Path, speed: float
) -> None:
    again = tmp_path / "again.mcap"
    spec = replay_spec(
        _imaging(f"record: {{path: '{again}', links: [camera.frames]}}"), str(recorded), speed=speed
    )
    _run_until(spec, "camera.frames", FRAMES)
    old = [m.time for m in _messages(recorded, "camera.frames")]
    new = [m.time for m in _messages(again, "camera.frames")]
    recorded_s = (old[-1] - old[0]) / 1e9
    replayed_s = (new[-1] - new[0]) / 1e9
    assert replayed_s == pytest.approx(recorded_s / speed, rel=0.10)


def test_a_player_in_a_pipeline_file_names_its_ports_after_the_recorded_channels(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.mcap"
    with RecordingWriter(path) as w:
        for i in range(3):
            w.write("camera.frames", np.full((4, 4), i, np.uint16), sequence=i, publish_ns=i)
    spec = plexa.loads(
        f"""
actors:
  player: {{class: "plexa.replay:Player", options: {{file: '{path}', speed: max}}}}
  traces: {{class: "plexa.examples.imaging:RoiTraces", options: {{size: 2}}}}
connections:
  player.frames: [traces.frames]
"""
    )
    assert spec.actors["player"].outputs == ("frames",)
    with pytest.raises(plexa.ConfigError, match="has no output 'frame'"):
        plexa.loads(
            f"""
actors:
  player: {{class: "plexa.replay:Player", options: {{file: '{path}'}}}}
  traces: {{class: "plexa.examples.imaging:RoiTraces"}}
connections:
  player.frame: [traces.frames]
"""
        )


def _plexa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plexa", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_plexa_replay_at_max_speed_plays_everything_then_ends(
    recorded: Path, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    done = _plexa(
        "replay",
        str(recorded),
        str(EXAMPLE),
        "--speed",
        "max",
        "--record",
        "out.mcap",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 60
    assert [m.sequence for m in _messages(tmp_path / "out.mcap", "camera.frames")] == list(
        range(FRAMES)
    )


def test_plexa_info_shows_channels_messages_and_encodings(recorded: Path) -> None:
    done = _plexa("info", str(recorded), cwd=recorded.parent)
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout and "pipeline 'imaging'" in done.stdout
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if "│" in line[:2]}
    assert f" {FRAMES} " in lines["camera.frames"] and "plexa.ndarray" in lines["camera.frames"]
    assert "traces.traces" in lines


def test_plexa_export_writes_an_image_stack_to_npy(recorded: Path, tmp_path: Path) -> None:
    done = _plexa(
        "export", str(recorded), "--channel", "camera.frames", "--to", "stack.npy", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    stack = np.load(tmp_path / "stack.npy", mmap_mode="r")
    frames = _messages(recorded, "camera.frames")
    assert stack.shape == (FRAMES, 512, 512) and stack.dtype == np.uint16
    assert all(np.array_equal(stack[i], m.obj) for i, m in enumerate(frames))


@pytest.mark.parametrize("suffix,module", [(".zarr", "zarr"), (".h5", "h5py")])
def test_export_writes_zarr_and_h5_when_their_package_is_installed(
    tmp_path: Path, suffix: str, module: str
) -> None:
    lib = pytest.importorskip(module, reason=f"{module} is optional")
    from plexa.edges.cli_record import export_channel

    path = tmp_path / "r.mcap"
    arrays = [np.full((3, 5), i, np.uint16) for i in range(4)]
    with RecordingWriter(path) as w:
        for i, a in enumerate(arrays):
            w.write("cam.x", a, sequence=i, publish_ns=i)
    out = tmp_path / f"stack{suffix}"
    assert export_channel(path, "cam.x", out) == (4, (4, 3, 5), "uint16")
    if module == "zarr":
        got = np.asarray(lib.open_array(str(out), mode="r")[:])
    else:
        with lib.File(out, "r") as fh:
            got = fh["cam.x"][:]
    assert np.array_equal(got, np.stack(arrays))


def test_export_refuses_a_channel_of_unequal_arrays(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    with RecordingWriter(path) as w:
        w.write("cam.x", np.zeros((2, 2)), sequence=0, publish_ns=0)
        w.write("cam.x", np.zeros((3, 2)), sequence=1, publish_ns=1)
    done = _plexa("export", str(path), "--channel", "cam.x", "--to", "s.npy", cwd=tmp_path)
    assert done.returncode == 2 and "not one stack" in done.stderr


@pytest.mark.slow
def test_plexa_ctl_record_stops_and_starts_the_recording_of_a_running_pipeline(
    tmp_path: Path,
) -> None:
    name = f"rec-{os.getpid()}"
    run = subprocess.Popen(
        [sys.executable, "-m", "plexa", "run", str(EXAMPLE), "--name", name, "--record", "a.mcap"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def running() -> bool:  # the server answers while its actors are still set up
            status = _plexa("ctl", name, "status", "--json", cwd=tmp_path)
            return status.returncode == 0 and json.loads(status.stdout)["run"]["state"] == "running"

        wait_for(running, 30.0)
        stopped = _plexa("ctl", name, "record", "stop", "--json", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout)["path"] == str(tmp_path / "a.mcap")  # plain document
        refused = _plexa("ctl", name, "record", "start", "camera.frame", cwd=tmp_path)
        assert refused.returncode == 1 and "no output 'camera.frame'" in refused.stderr
        started_ = _plexa("ctl", name, "record", "start", "camera.frames", "--json", cwd=tmp_path)
        assert started_.returncode == 0, started_.stderr
        assert json.loads(started_.stdout)["path"] == str(tmp_path / "a-1.mcap")
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    with plexa.recording.open(tmp_path / "a.mcap") as rec:
        assert rec.complete and set(rec.topics) == {"camera.frames", "traces.traces"}
    with plexa.recording.open(tmp_path / "a-1.mcap") as rec:
        assert rec.complete and {m.channel for m in rec} == {"camera.frames"}


@pytest.mark.slow
def test_kill_9_of_the_nexus_leaves_a_recording_readable_up_to_its_last_chunk(
    tmp_path: Path,
) -> None:
    import psutil

    run = subprocess.Popen(
        [sys.executable, "-m", "plexa", "run", str(EXAMPLE), "--record", "k.mcap"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = tmp_path / "k.mcap"
    try:
        wait_for(lambda: path.exists() and path.stat().st_size > 20 * 2**20, 60.0, "frames")
        children = psutil.Process(run.pid).children(recursive=True)
    finally:
        run.kill()
        run.wait()
    wait_for(lambda: not any(c.is_running() and c.status() != "zombie" for c in children), 30.0)
    assert _plexa("cleanup", cwd=tmp_path).returncode == 0
    with plexa.recording.open(path) as rec:  # finished on SIGTERM, or up to its last chunk
        frames = [m.sequence for m in rec.messages(["camera.frames"])]
    assert len(frames) >= 40 and frames == list(range(len(frames)))
