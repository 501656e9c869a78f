"""The ``record:`` section of a pipeline file."""

from __future__ import annotations

import pytest

import plexa
from plexa.core.spec import Policy, RecordSpec

PIPELINE = """
name: imaging
actors:
  camera:  {class: "plexa.examples.imaging:FrameSource"}
  traces:  {class: "plexa.examples.imaging:RoiTraces"}
connections:
  camera.frames: [traces.frames]
"""


def test_a_pipeline_without_a_record_section_records_nothing() -> None:
    assert plexa.loads(PIPELINE).record is None


def test_a_record_section_is_read_into_a_record_spec() -> None:
    spec = plexa.loads(
        PIPELINE
        + """
record:
  path: "runs/{name}-{time}.mcap"
  links: [camera.frames, traces.traces]
  chunk_size: 8MB
  compression: zstd
  policy: drop_oldest
  capacity: 32
  foxglove: [camera.frames]
"""
    )
    assert spec.record == RecordSpec(
        path="runs/{name}-{time}.mcap",
        links=("camera.frames", "traces.traces"),
        chunk_size=8_000_000,
        compression="zstd",
        policy=Policy.DROP_OLDEST,
        capacity=32,
        foxglove=("camera.frames",),
    )


def test_record_all_and_a_bare_path_are_accepted() -> None:
    assert plexa.loads(PIPELINE + "record: {links: all}").record == RecordSpec()
    assert plexa.loads(PIPELINE + "record: x.mcap").record == RecordSpec(path="x.mcap")


def test_every_problem_in_a_record_section_is_reported_with_its_line() -> None:
    bad = (
        PIPELINE
        + """
record:
  links: [camera.frame]
  compression: gzip
  policy: latest
  chunksize: 1
"""
    )
    with pytest.raises(plexa.ConfigError) as info:
        plexa.loads(bad)
    text = str(info.value)
    assert "record.links: no output 'camera.frame' (did you mean 'camera.frames'?" in text
    assert "record.compression: must be none, lz4 or zstd, not 'gzip'" in text
    assert "record.policy: must be block or drop_oldest, not 'latest'" in text
    assert "unknown key 'chunksize' (did you mean 'chunk_size'?)" in text
    assert all(issue.line is not None for issue in info.value.issues)


def test_improvs_use_watcher_records_every_output() -> None:
    spec = plexa.loads(
        PIPELINE.replace("name: imaging", "name: imaging\nsettings: {use_watcher: true}")
    )
    assert spec.record == RecordSpec()
    with pytest.raises(plexa.ConfigError, match="must be true or false"):
        plexa.loads(PIPELINE.replace("name: imaging", "name: imaging\nsettings: {use_watcher: 1}"))
