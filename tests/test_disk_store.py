"""The object store on disk (``settings.store``, improv's ``use_hdd``): it outlives its run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import plexa
from conftest import started

PIPELINE = """
name: disk-store
settings:
  {settings}
actors:
  camera:  {{class: "plexa.examples.imaging:FrameSource", options: {{shape: [8, 8], rate_hz: 10}}}}
"""


def test_a_store_on_disk_survives_its_run_and_the_next_run_reopens_it(tmp_path: Path) -> None:
    where = tmp_path / "store"
    spec = plexa.loads(PIPELINE.format(settings=f"store: {{path: '{where}', size: 64MB}}"))
    assert spec.settings.store_path == str(where) and spec.settings.store_size == 64_000_000
    with started(spec) as nexus:
        key = nexus.store.put({"frame": np.arange(6.0)}, key="kept")
    assert (where / "data.mdb").is_file()
    with started(spec) as nexus:
        got = nexus.store.get(key)
        assert np.array_equal(got["frame"], np.arange(6.0))


def test_improvs_use_hdd_keeps_the_store_in_the_pipelines_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXA_DATA_DIR", str(tmp_path))
    spec = plexa.loads(PIPELINE.format(settings="use_hdd: true"))
    with started(spec) as nexus:
        nexus.store.put(b"x", key="k")
    assert (tmp_path / "disk-store" / "store" / "data.mdb").is_file()


def test_a_store_setting_without_a_path_is_refused() -> None:
    with pytest.raises(plexa.ConfigError, match=r"settings\.store: must be \{path: DIR"):
        plexa.loads(PIPELINE.format(settings="store: {size: 1GB}"))
