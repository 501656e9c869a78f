"""MCAP recordings as files: what is written reads back, with plexa and with the mcap package."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

import plexa.recording
from plexa.data.recording import RecordingWriter
from plexa.errors import RecordingError


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 4096, (64, 48), dtype=np.uint16) for _ in range(n)]


def _write(path: Path, compression: str = "none", chunk_size: int = 32 * 1024) -> list[object]:
    objs: list[object] = [
        *_frames(20),
        {"roi": 3, "trace": np.arange(5, dtype=np.float32), "name": "x", "ok": True},
        [1, 2.5, None, b"raw"],
        ("a", "tuple"),  # not plain data: a pickle
        np.zeros((0, 3), np.int8),
    ]
    with RecordingWriter(path, chunk_size=chunk_size, compression=compression) as w:
        for seq, obj in enumerate(objs):
            topic = "camera.frames" if isinstance(obj, np.ndarray) else "misc.out"
            w.write(topic, obj, sequence=seq, publish_ns=1_000_000 + seq)
    return objs


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_every_message_reads_back_bit_exact_with_its_sequence_and_time(
    tmp_path: Path, compression: str
) -> None:
    path = tmp_path / "r.mcap"
    objs = _write(path, compression)
    with plexa.recording.open(path, unpickle=True) as rec:
        assert rec.complete
        got = list(rec)
    assert [m.sequence for m in got] == list(range(len(objs)))
    assert [m.time for m in got] == [1_000_000 + i for i in range(len(objs))]
    for msg, obj in zip(got, objs, strict=True):
        assert _same(obj, msg.obj), (msg.channel, obj, msg.obj)


def test_arrays_of_an_uncompressed_file_are_aligned_read_only_views_of_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.mcap"
    _write(path)
    with plexa.recording.open(path) as rec:
        arrays = [m.obj for m in rec.messages(["camera.frames"])]
    assert all(not a.flags.writeable and not a.flags.owndata for a in arrays)
    assert all(a.ctypes.data % 64 == 0 for a in arrays if a.size)


def test_a_pickled_message_is_not_loaded_unless_the_reader_asks(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    _write(path)
    with plexa.recording.open(path) as rec:
        pickled = [m.obj for m in rec if isinstance(m.obj, plexa.recording.Pickled)]
    assert len(pickled) == 1
    assert pickled[0].load() == ("a", "tuple")


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_the_mcap_package_reads_plexas_files_through_their_index(
    tmp_path: Path, compression: str
) -> None:
    path = tmp_path / "r.mcap"
    objs = _write(path, compression)
    with open(path, "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == len(objs)
        assert len(summary.chunk_indexes) > 1
        assert {c.topic for c in summary.channels.values()} == {"camera.frames", "misc.out"}
        seqs = [m.sequence for _, ch, m in reader.iter_messages(topics=["camera.frames"])]
        metadata = list(reader.iter_metadata())
    assert seqs == [*range(20), len(objs) - 1]
    assert metadata == []


def test_images_on_a_foxglove_topic_are_raw_images_that_a_ros2_decoder_reads(
    tmp_path: Path,
) -> None:
    mcap_ros2 = pytest.importorskip("mcap_ros2.decoder", reason="mcap-ros2-support not installed")
    path = tmp_path / "r.mcap"
    image = _frames(1)[0]
    with RecordingWriter(path, foxglove=["camera.frames"]) as w:
        w.write("camera.frames", image, sequence=0, publish_ns=1_500_000_000_123)
    with open(path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[mcap_ros2.DecoderFactory()])
        ((schema, _, _, msg),) = list(reader.iter_decoded_messages())
    assert schema.name == "foxglove_msgs/msg/RawImage"
    assert (msg.width, msg.height, msg.encoding, msg.step) == (48, 64, "mono16", 96)
    assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint16).reshape(64, 48), image)


@pytest.mark.parametrize(
    "image",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.arange(24, dtype=np.uint16).reshape(4, 6),
        np.arange(36, dtype=np.uint8).reshape(3, 4, 3),
        np.arange(48, dtype=np.uint8).reshape(3, 4, 4),
    ],
)
def test_foxglove_images_read_back_as_the_same_arrays(tmp_path: Path, image: np.ndarray) -> None:
    path = tmp_path / "r.mcap"
    with RecordingWriter(path, foxglove=["cam.x"]) as w:
        w.write("cam.x", image, sequence=7, publish_ns=5)
        w.write("cam.x", np.zeros(3, np.float64), sequence=8, publish_ns=6)  # not an image
    with plexa.recording.open(path) as rec:
        got = list(rec)
        info = rec.info()
    assert np.array_equal(got[0].obj, image) and got[0].obj.dtype == image.dtype
    assert np.array_equal(got[1].obj, np.zeros(3))
    assert info[0].encodings == ("foxglove_msgs/msg/RawImage", "plexa.ndarray")


def test_info_counts_messages_bytes_and_rates_per_channel(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    with RecordingWriter(path) as w:
        for i in range(11):
            w.write("a.x", np.zeros(100, np.uint8), sequence=i, publish_ns=i * 10**8)
    with plexa.recording.open(path) as rec:
        (info,) = rec.info()
    assert (info.topic, info.messages) == ("a.x", 11)
    assert info.duration_s == pytest.approx(1.0)
    assert info.rate_hz == pytest.approx(10.0)
    assert info.bytes >= 1100


def test_reading_an_unknown_channel_names_the_ones_there(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    _write(path)
    with plexa.recording.open(path) as rec, pytest.raises(RecordingError, match=r"camera\.frames"):
        list(rec.messages(["camera.frame"]))


def test_a_file_that_is_not_mcap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    path.write_bytes(b"hello world")
    with pytest.raises(RecordingError, match="not an MCAP file"):
        plexa.recording.open(path)


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from plexa.data.recording import RecordingWriter
    w = RecordingWriter(sys.argv[1], chunk_size=8192)
    frame = np.zeros((16, 16), np.uint16)
    seq = 0
    while True:
        frame[:] = seq
        w.write("camera.frames", frame, sequence=seq, publish_ns=seq + 1)
        seq += 1
        if seq == 400:
            print("chunks written", flush=True)
    """
)


def test_a_writer_killed_mid_file_leaves_every_complete_chunk_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"chunks written\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with plexa.recording.open(path) as rec:
        assert not rec.complete
        seqs = [m.sequence for m in rec]
        frames_ok = all(int(m.obj[5, 5]) == m.sequence & 0xFFFF for m in rec)
    # 512-byte frames, 8 KiB chunks: at most the 14 or so of the chunk being filled are lost
    assert len(seqs) >= 400 - 16
    assert seqs == list(range(len(seqs)))
    assert frames_ok


def test_a_large_message_is_written_at_once_in_a_chunk_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "r.mcap"
    writer = RecordingWriter(path, chunk_size=1024 * 1024)
    writer.write("cam.x", np.zeros(1000, np.uint8), sequence=0, publish_ns=1)
    size = path.stat().st_size
    writer.write("cam.x", np.ones((256, 256), np.uint16), sequence=1, publish_ns=2)
    # the small one's chunk first, then the frame's own: both on disk before close
    assert path.stat().st_size > size + 2 * 256 * 256
    with plexa.recording.open(path) as rec:
        assert [m.sequence for m in rec] == [0, 1] and not rec.complete
    writer.close()
