"""Recording an output that was not connected to a recorder when the run started, on a live
run: ``plexa ctl NAME record start OUTPUT`` brings a recorder up through taps (drop_oldest,
never slowing the pipeline), ``record stop`` finishes the file, quit or kill -9 + cleanup
leaves nothing; and improv's ``use_watcher`` records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

import plexa
import plexa.recording
from conftest import alive, plexa_server, plexa_shm, started, wait_for
from plexa.data.counters import OutputField
from plexa.data.tap import Tap, tappable, untappable
from plexa.errors import RecordingError
from plexa.nexus import live
from test_recording_run import _bank, _expected

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "imaging.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}


def _fields(status: dict[str, Any]) -> dict[str, Any]:
    progress = status["actors"].get("recorder", {}).get("progress") or {}
    return dict(progress.get("fields") or {})


def _ctl(name: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plexa", "ctl", name, *words],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def _status(name: str) -> dict[str, Any]:
    done = _ctl(name, "status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _check_frames(path: Path, dropped: int | None = None) -> list[int]:
    """The file is complete, its frames bit-exact with increasing sequence numbers and, given
    the recorder's ``dropped``, every frame between the first and the last is either in the
    file or counted as dropped."""
    bank = _bank()
    with plexa.recording.open(path) as rec:
        assert rec.complete and rec.topics == ["camera.frames"]
        seqs = []
        for msg in rec:
            assert np.array_equal(msg.obj, _expected(msg.sequence, bank)), msg.sequence
            seqs.append(msg.sequence)
    assert seqs and seqs == sorted(set(seqs)), seqs  # strictly increasing
    if dropped is not None:
        assert seqs[-1] - seqs[0] + 1 == len(seqs) + dropped
    return seqs


@pytest.mark.slow
def test_ctl_record_start_records_an_output_of_a_run_started_without_recording(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.mcap"
    with plexa_server(EXAMPLE, prefix="rec") as run:
        early = _ctl(run.name, "record", "start", "camera.frames", "--to", str(path))
        assert early.returncode == 1 and "not set up" in early.stderr, early.stderr
        for command in ("setup", "run"):
            assert _ctl(run.name, command).returncode == 0
        before = _status(run.name)
        assert "recorder" not in before["actors"]
        done = _ctl(run.name, "record", "start", "camera.frames", "--to", str(path))
        assert done.returncode == 0, done.stderr
        said = "recording: 0 messages (0.0 MB), 0 dropped, 0 not written -> "
        assert done.stdout == f"{said}{path}\n"
        wait_for(lambda: _fields(_status(run.name)).get("written", 0) >= 30, 30, "30 frames")
        status = _status(run.name)
        assert status["actors"]["recorder"]["state"] == "running"
        link = status["links"]["camera.frames->traces.frames"]
        assert link["dropped"] == 0 and link["lost"] == 0  # the recorder took nothing from it
        assert not any(name.endswith("->recorder.camera.frames") for name in status["links"])
        done = _ctl(run.name, "record", "stop", "--json")
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout)
        seqs = _check_frames(path, stats["dropped"])
        assert len(seqs) == stats["written"] >= 30
        wait_for(
            lambda: "STOPPED: on request" in _status(run.name)["actors"]["recorder"]["progress"][
                "message"
            ],
            10,
            "the recorder to say it stopped",
        )
        assert _status(run.name)["run"]["state"] == "running"
    assert run.proc.returncode == 0, run.err


@pytest.mark.slow
def test_record_start_again_writes_a_new_file_and_stop_without_a_recorder_is_refused(
    tmp_path: Path,
) -> None:
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    with started(spec) as nexus:
        with pytest.raises(RecordingError, match="no recorder"):
            live.record(nexus, "stop")
        with pytest.raises(RecordingError, match=r"no output 'camera\.frame' \(outputs: "):
            live.record(nexus, "start", ["camera.frame"])
        assert "recorder" not in nexus.actors  # nothing was started for a refused request
        first = live.record(nexus, "start", ["camera.frames"], str(tmp_path / "a.mcap"))
        assert first["path"] == str(tmp_path / "a.mcap")
        with pytest.raises(plexa.RemoteError, match="already recording"):
            live.record(nexus, "start", ["traces.traces"])
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 10, 30.0)
        stats = live.record(nexus, "stop")
        _check_frames(tmp_path / "a.mcap", stats["dropped"])
        with pytest.raises(plexa.RemoteError, match=r"cannot record to .*No such file") as err:
            live.record(nexus, "start", ["camera.frames"], "/proc/no/such/dir/x.mcap")
        assert not err.value.traceback  # a clear refusal, not a stack dump
        assert nexus.state.value == "running"
        again = live.record(nexus, "start", [], str(tmp_path / "b.mcap"))  # every output
        assert again["written"] == stats["written"] and nexus.actors["recorder"].restarts == 0
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= stats["written"] + 20, 30.0)
    with plexa.recording.open(tmp_path / "b.mcap") as rec:  # finished when the run quit
        assert rec.complete and set(rec.topics) == {"camera.frames", "traces.traces"}
        traces = [m.sequence for m in rec.messages(["traces.traces"])]
    assert traces and traces == sorted(set(traces))


@pytest.mark.slow
def test_a_killed_live_recorder_is_restarted_and_records_on_into_a_new_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "killed.mcap"
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    with started(spec) as nexus:
        live.record(nexus, "start", ["camera.frames"], str(path))
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 20, 30.0)
        os.kill(nexus.status()["actors"]["recorder"]["pid"], signal.SIGKILL)
        nexus.wait_until(lambda s: s["actors"]["recorder"]["restarts"] == 1, 30.0)
        nexus.wait_until(lambda s: _fields(s).get("path") == str(tmp_path / "killed-1.mcap"), 30)
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 10, 30.0)
        taps = nexus.resources.counters.output_row("camera.frames")[OutputField.TAPS]
        assert taps == 1  # the killed recorder's tap went with it
    bank = _bank()
    with plexa.recording.open(path) as rec:  # cut at its last complete chunk
        assert not rec.complete
        seqs = [m.sequence for m in rec]
        assert all(np.array_equal(m.obj, _expected(m.sequence, bank)) for m in rec)
    assert len(seqs) >= 20 and seqs == sorted(set(seqs))
    assert len(_check_frames(tmp_path / "killed-1.mcap")) >= 10


@pytest.mark.slow
def test_kill_9_of_the_nexus_while_recording_live_leaves_a_readable_file_and_cleanup_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orphan.mcap"
    before = plexa_shm()
    with plexa_server(EXAMPLE, prefix="recK") as run:
        for command in ("setup", "run"):
            assert _ctl(run.name, command).returncode == 0
        assert _ctl(run.name, "record", "start", "camera.frames", "--to", str(path)).returncode == 0
        wait_for(lambda: _fields(_status(run.name)).get("written", 0) >= 20, 30, "20 frames")
        pids = [a["pid"] for a in _status(run.name)["actors"].values()]
        run.proc.kill()
        run.proc.wait(10)
        wait_for(lambda: not any(alive(p) for p in pids), 15, "every actor to go with the nexus")
    done = subprocess.run(
        [sys.executable, "-m", "plexa", "cleanup"], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: plexa_shm() <= before, 5, "the run's shared memory to be removed")
    assert len(_check_frames(path)) >= 20  # the recorder finished it on SIGTERM


def test_improvs_use_watcher_records_every_output_to_the_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = EXAMPLE.read_text().replace("settings:\n", "settings:\n  use_watcher: true\n")
    spec = plexa.loads(text.replace("rate_hz: 100", "rate_hz: 50"), str(EXAMPLE))
    with started(spec) as nexus:
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 30, 30.0)
        nexus.stop()
        sent = nexus.status()["links"]["camera.frames->recorder.camera.frames"]["sent"]
    (found,) = tmp_path.glob("imaging-*.mcap")
    with plexa.recording.open(found) as rec:
        assert rec.complete
        assert set(rec.topics) == {"camera.frames", "traces.traces"}
        frames = [m.sequence for m in rec.messages(["camera.frames"])]
    assert frames == list(range(sent))  # linked from the start: lossless


@pytest.mark.slow
def test_a_tapped_output_never_waits_for_the_recorder_and_what_it_missed_is_counted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "behind.mcap"
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    with started(spec) as nexus:
        live.record(nexus, "start", ["camera.frames"], str(path))
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 10, 30.0)
        nexus.pause(["recorder"])  # a recorder far behind: it takes nothing at all
        sent = nexus.status()["links"]["camera.frames->traces.frames"]["sent"]
        nexus.wait_until(  # the camera goes on at its rate, the link stays lossless
            lambda s: s["links"]["camera.frames->traces.frames"]["received"] >= sent + 60, 30.0
        )
        nexus.resume(["recorder"])
        nexus.wait_until(lambda s: _fields(s).get("dropped", 0) >= 40, 30.0)
        stats = live.record(nexus, "stop")
        link = nexus.status()["links"]["camera.frames->traces.frames"]
    assert link["dropped"] == 0 and link["lost"] == 0
    seqs = _check_frames(path, stats["dropped"])
    assert len(seqs) == stats["written"] and stats["not_written"] == 0


def test_a_recorder_reading_taps_is_woken_by_each_frame_not_by_a_clock(tmp_path: Path) -> None:
    """The tapped camera wakes the recorder: frames are written within milliseconds of
    their send (the recorder's nap between looks, when nothing wakes it, is 50 ms)."""
    path = tmp_path / "woken.mcap"
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    with started(spec) as nexus:
        live.record(nexus, "start", ["camera.frames"], str(path))
        row = nexus.resources.counters.output_row("camera.frames")
        assert row[OutputField.TAPS] == 1
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 60, 30.0)
        live.record(nexus, "stop")
        assert row[OutputField.TAPS] == 0
    with plexa.recording.open(path) as rec:
        delays = sorted(m.log_time - m.time for m in rec)
    assert len(delays) >= 60
    assert delays[len(delays) // 2] < 10_000_000, delays[len(delays) // 2]


def test_an_actor_reading_taps_stops_after_the_producers_it_taps() -> None:
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    assert spec.stop_order() == [["camera"], ["traces"], ["monitor"]]
    spec = msgspec.structs.replace(
        spec, actors={**spec.actors, "rec": live.live_recorder(spec, "r1")}
    )
    assert spec.actors["rec"].taps == ("camera.frames", "traces.traces")
    assert spec.stop_order() == [["camera"], ["traces"], ["monitor", "rec"]]


@pytest.mark.slow
def test_a_recorder_linked_at_the_start_taps_the_outputs_it_was_not_linked_to(
    tmp_path: Path,
) -> None:
    section = f"record: {{path: '{tmp_path / 'a.mcap'}', links: [traces.traces]}}"
    spec = plexa.loads(f"{EXAMPLE.read_text()}\n{section}\n", str(EXAMPLE))
    with started(spec) as nexus:
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 5, 30.0)
        live.record(nexus, "stop")
        both = ["camera.frames", "traces.traces"]
        live.record(nexus, "start", both, str(tmp_path / "b.mcap"))
        assert "camera.frames->recorder.camera.frames" not in nexus.status()["links"]
        with Tap(nexus.paths, nexus.spec, "camera.frames") as peek:  # plexa peek, meanwhile
            wait_for(lambda: peek.take() is not None, 10, "plexa peek to see a frame")
        nexus.wait_until(lambda s: _fields(s).get("written", 0) >= 60, 30.0)
        linked = nexus.status()["links"]["traces.traces->recorder.traces.traces"]
    assert linked["received"] > 0
    with plexa.recording.open(tmp_path / "b.mcap") as rec:
        assert rec.complete and set(rec.topics) == set(both)
        frames = [m.sequence for m in rec.messages(["camera.frames"])]
    assert frames and frames == sorted(set(frames))


def test_outputs_that_do_not_go_through_shared_memory_here_cannot_be_tapped() -> None:
    spec = plexa.loads(EXAMPLE.read_text(), str(EXAMPLE))
    assert tappable(spec) == ["camera.frames", "traces.traces"]
    assert "no output 'camera.frame'" in str(untappable(spec, "camera.frame"))
    zenoh = msgspec.structs.replace(spec, zenoh_links=True)
    assert "through shared memory" in str(untappable(zenoh, "camera.frames"))
    camera = msgspec.structs.replace(spec.actors["camera"], host="scope")
    away = msgspec.structs.replace(spec, actors={**spec.actors, "camera": camera})
    assert "shared memory" in str(untappable(away, "camera.frames"))  # the link crosses hosts
    both = msgspec.structs.replace(spec.actors["traces"], host="scope")
    there = msgspec.structs.replace(away, actors={**away.actors, "traces": both})
    assert "away from the nexus's host" in str(untappable(there, "camera.frames"))
    ray = msgspec.structs.replace(spec.settings, launch="ray")
    assert untappable(msgspec.structs.replace(spec, settings=ray), "camera.frames") is not None


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"action": "start", "links": "camera.frames"}, "links must be a list"),
        ({"action": "start", "links": [1]}, "links must be a list"),
        ({"action": "start", "path": {"a": 1}}, "path must be a file name"),
        ({"action": "start", "timeout_s": "zz"}, "timeout_s must be a positive number"),
        ({"action": "start", "timeout_s": -1}, "timeout_s must be a positive number"),
    ],
)
def test_a_record_request_with_arguments_of_the_wrong_kind_is_refused_before_anything_runs(
    args: dict[str, Any], why: str
) -> None:
    from plexa.core import protocol as proto

    with pytest.raises(RecordingError, match=why):  # no nexus needed: nothing is touched
        live.handle(None, proto.Request(command="record", args=args))  # type: ignore[arg-type]
