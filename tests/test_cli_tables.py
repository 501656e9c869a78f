"""The status tables and progress bars, rendered from status documents."""

from __future__ import annotations

from typing import Any

from plexa.edges.tables import ProgressRates, grid, progress_bar, render_status

STATUS: dict[str, Any] = {
    "run": {"name": "imaging", "id": "0a1b2c3d", "state": "running", "busy": "", "uptime_s": 12.34},
    "actors": {
        "camera": {
            "state": "running", "pid": 101, "restarts": 0, "msgs_in": 0, "msgs_out": 1234,
            "rate_in": 0.0, "rate_out": 100.0, "handler_p50_us": None, "handler_p99_us": None,
            "cpu_percent": 12.5, "rss_bytes": 50 * 2**20,
        },
        "traces": {
            "state": "restarting", "pid": None, "restarts": 2, "msgs_in": 1200, "msgs_out": 1190,
            "rate_in": 99.5, "rate_out": 99.5, "handler_p50_us": 310.0, "handler_p99_us": 1800.0,
            "progress": {"done": 5, "total": 10, "message": "rois"},
            "failure": {"kind": "exception", "phase": "run", "error": "ValueError: boom",
                        "traceback": "Traceback ..."},
        },
    },
    "links": {
        "camera.frames->traces.frames": {
            "policy": "block", "capacity": 8, "sent": 1234, "received": 1200, "dropped": 0,
            "lost": 0, "in_flight": 34, "depth": 3, "rate": 99.5, "bytes_per_s": 52_000_000.0,
            "latency_p50_us": 80.0, "latency_p99_us": 950.0,
        },
    },
}  # fmt: skip

EXPECTED = """\
imaging  running  up 12.3 s  (run 0a1b2c3d)

actor   state       restarts  pid  in/s  out/s     in    out  p50 us  p99 us  cpu %  rss MB  progress
camera  running            0  101     0    100      0  1,234       -       -   12.5    50.0
traces  restarting         2    -  99.5   99.5  1,200  1,190     310   1,800      -       -  [##########..........]   50%  5/10  rois

link                          policy  depth/cap   sent  dropped  lost  rate/s  MB/s  p50 us  p99 us
camera.frames->traces.frames  block         3/8  1,234        0     0    99.5  52.0      80     950
traces: exception in run: ValueError: boom"""  # noqa: E501


def test_the_status_tables_render_actors_links_and_failures() -> None:
    assert render_status(STATUS) == EXPECTED


def test_a_progress_bar_at_half_way_is_half_filled_with_rate_and_eta() -> None:
    bar = progress_bar({"done": 50, "total": 100, "message": "fitting"}, rate=10.0)
    assert bar == "[##########..........]   50%  50/100  10/s  ETA 5 s  fitting"
    assert progress_bar({"done": 7, "total": None, "message": ""}) == "7"
    assert progress_bar(None) == ""


def test_progress_rates_come_from_successive_documents() -> None:
    rates = ProgressRates()
    doc = {"actors": {"fit": {"progress": {"done": 10, "total": 100}}}}
    assert rates.update(doc, now=0.0) == {}
    doc["actors"]["fit"]["progress"]["done"] = 30
    assert rates.update(doc, now=2.0) == {"fit": 10.0}


def test_columns_align_numbers_right_and_names_left_without_trailing_blanks() -> None:
    lines = grid(["name", "n"], [["a", "1"], ["bbb", "100"]], "lr")
    assert lines == ["name    n", "a       1", "bbb   100"]


def test_without_progress_the_progress_column_is_left_out() -> None:
    status = {**STATUS, "actors": {"camera": STATUS["actors"]["camera"]}}
    header = render_status(status).splitlines()[2]
    assert header.endswith("rss MB")
