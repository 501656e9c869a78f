"""The terminal UI against a real pipeline, driven headless through Textual's pilot.

The pipeline runs in this process (its actors in their own processes, as always); one
background thread drives the nexus and its control server, like ``plexa run --tui`` does.
The async test bodies run under ``asyncio.run`` so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static

import plexa
from conftest import wait_for
from plexa.edges.client import Client
from plexa.edges.tui import PING_S, QUIET_S, PlexaApp, run_client, run_tui
from plexa.edges.tui_screens import ConfirmScreen, DetailScreen, PromptScreen
from plexa.errors import InvalidTransition, PlexaError
from plexa.nexus.server import ControlServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "imaging.yaml"
FIT = EXAMPLE.with_name("fit.yaml")
ACTORS = ("camera", "traces", "monitor")
SIZE = (120, 40)


@contextlib.contextmanager
def live_run(
    example: Path = EXAMPLE, *, drive: bool = True
) -> Iterator[tuple[plexa.Nexus, ControlServer]]:
    """The imaging example, running; driven from one background thread if ``drive``."""
    nexus = plexa.Nexus(plexa.load(example))
    server = ControlServer(nexus)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set() and not server.quit_requested:
            nexus.poll(0.05)
            server.tick()

    thread = threading.Thread(target=loop, daemon=True)
    try:
        nexus.start()
        nexus.setup()
        nexus.run()
        if drive:
            thread.start()
        yield nexus, server
    finally:
        done.set()
        if thread.is_alive():
            thread.join()
        with contextlib.suppress(InvalidTransition):
            nexus.stop()
        server.close()
        nexus.quit()
        # This run's own shared memory must be gone (conftest checks all of /dev/shm, which
        # other test processes on the machine may be using at the same time).
        paths = nexus.paths
        wait_for(
            lambda: (
                not [
                    p
                    for p in os.listdir("/dev/shm")
                    if p == paths.shm_dir.name or p.startswith(paths.iox_prefix)
                ]
            ),
            5.0,
            "this run's shared memory to be removed",
        )


def connector(server: ControlServer) -> Callable[[], Client]:
    return lambda: Client(server.control_endpoint, server.events_endpoint, server.token)


async def wait_until(
    pilot: Pilot[Any], cond: Callable[[], object], what: str, timeout: float = 10.0
) -> None:
    """Let the app run until ``cond()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.1)


def shown_states(app: PlexaApp) -> dict[str, str]:
    table = app.query_one("#actors", DataTable)
    return {str(key.value): str(table.get_cell(key, "state")) for key in table.rows}


def all_shown(app: PlexaApp, state: str) -> bool:
    return shown_states(app) == dict.fromkeys(ACTORS, state)


def nexus_states(nexus: plexa.Nexus) -> dict[str, str]:
    # The nexus is driven by another thread; reading its attributes is safe.
    return {name: actor.state.value for name, actor in nexus.actors.items()}


def log_lines(app: PlexaApp) -> list[str]:
    return [line.text for line in app.query_one("#log", RichLog).lines]


def record_notes(app: PlexaApp) -> list[str]:
    """Keep every notification's text (still showing it)."""
    notes: list[str] = []
    show = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append(message)
        show(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return notes


def drive_with(
    monkeypatch: pytest.MonkeyPatch, script: Callable[[Pilot[Any]], Awaitable[None]]
) -> list[PlexaApp]:
    """Make ``PlexaApp.run()`` run headless under a pilot that plays ``script``."""
    ran: list[PlexaApp] = []

    def fake_run(self: PlexaApp, *args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            async with self.run_test(size=SIZE) as pilot:
                await script(pilot)

        ran.append(self)
        asyncio.run(main())

    monkeypatch.setattr(PlexaApp, "run", fake_run)
    return ran


def test_the_tables_fill_and_keys_pause_and_resume_the_run() -> None:
    with live_run() as (nexus, server):
        app = PlexaApp(connector(server))

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:
                notes = record_notes(app)
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                links = app.query_one("#links", DataTable)
                assert {str(k.value) for k in links.rows} == {
                    "camera.frames->traces.frames",
                    "traces.traces->monitor.traces",
                }

                await pilot.press("p")
                await wait_until(
                    pilot,
                    lambda: set(nexus_states(nexus).values()) == {"paused"},
                    "the nexus to pause every actor",
                )
                await wait_until(pilot, lambda: all_shown(app, "paused"), "the table: paused")
                await wait_until(pilot, lambda: any(n.startswith("pause: ok") for n in notes), "ok")

                await pilot.press("r")
                await wait_until(pilot, lambda: all_shown(app, "running"), "the table: running")
                assert set(nexus_states(nexus).values()) == {"running"}

                # Shift acts on the selected actor only: the cursor starts on the first row.
                assert app.selected_actor() == "camera"
                await pilot.press("P")
                want = {"camera": "paused", "traces": "running", "monitor": "running"}
                await wait_until(pilot, lambda: shown_states(app) == want, "camera paused")
                assert nexus_states(nexus) == want
                await pilot.press("R")
                await wait_until(pilot, lambda: all_shown(app, "running"), "camera resumed")

                # A refused command is reported, and the run goes on.
                await pilot.press("t")
                await wait_until(pilot, lambda: any("setup refused" in n for n in notes), "refusal")

                # The monitor logs its rate once a second.
                await wait_until(
                    pilot,
                    lambda: any(" monitor INFO " in line for line in log_lines(app)),
                    "a log record from monitor",
                )
                assert "logs ≥ INFO" in app.sub_title
                await pilot.press("l")
                assert "logs ≥ WARNING" in app.sub_title
                assert not any(" INFO " in line for line in log_lines(app))
                for _ in range(3):
                    await pilot.press("l")
                assert "logs ≥ INFO" in app.sub_title
                assert any(" monitor INFO " in line for line in log_lines(app))

                assert app.query_one("#spark").data[-1] > 0  # type: ignore[attr-defined]

        asyncio.run(main())
        assert set(nexus_states(nexus).values()) == {"running"}


def screen_text(app: PlexaApp) -> str:
    """The text of the rendered screen, as its SVG screenshot shows it."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def test_screenshot_shows_actors_columns_and_keys() -> None:
    # A full golden SVG would differ on every run (rates, latencies, uptime, log times), so
    # this checks the stable parts of the rendered screen: names, headers and the footer.
    expected = (
        *ACTORS,
        "plexa: imaging",
        "traces.traces->monitor.traces",
        *("actor", "state", "in/s", "out/s", "p50 µs", "p99 µs", "restarts"),
        *("link", "policy", "depth", "dropped", "lost", "msgs/s"),
        *("pause", "resume", "stop", "abort", "kill", "revive", "set", "invoke"),
        *("details", "level", "detach", "quit run", "progress"),
    )

    def missing(svg: str) -> list[str]:
        text = html.unescape(svg).replace("\xa0", " ")
        return [t for t in expected if t not in text]

    with live_run() as (_, server):
        app = PlexaApp(connector(server))

        async def main() -> str:
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                # The Footer recomposes when bindings change (focus at start-up), and is
                # briefly empty while it does: on a busy machine that can take a moment.
                await wait_until(
                    pilot, lambda: not missing(app.export_screenshot()), "the whole screen"
                )
                return app.export_screenshot()

        svg = asyncio.run(main())
    assert svg.startswith("<svg")
    assert not missing(svg)


def test_detaching_leaves_the_run_going() -> None:
    with live_run() as (nexus, server):
        app = PlexaApp(connector(server))

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                await pilot.press("q")
                await wait_until(pilot, lambda: not app.is_running, "the app to exit")

        asyncio.run(main())
        assert not server.quit_requested
        with connector(server)() as client:
            status = client.status()
            assert status["run"]["state"] == "running"
            assert set(nexus_states(nexus).values()) == {"running"}
            before = status["actors"]["monitor"]["msgs_in"]
            wait_for(
                lambda: client.status()["actors"]["monitor"]["msgs_in"] > before + 10,
                5.0,
                "messages to keep flowing after the UI left",
            )


def test_shift_q_quits_the_run_after_a_confirmation() -> None:
    with live_run() as (_, server):
        app = PlexaApp(connector(server))

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                await pilot.press("Q")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
                await pilot.press("n")
                await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "no")
                assert app.is_running and not server.quit_requested
                await pilot.press("Q", "y")
                await wait_until(pilot, lambda: not app.is_running, "the app to exit")

        asyncio.run(main())
        assert server.quit_requested


def test_details_set_and_kill_keys_act_on_the_selected_actor() -> None:
    with live_run() as (nexus, server):
        app = PlexaApp(connector(server))
        notes = record_notes(app)

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                await pilot.press("down")  # traces
                assert app.selected_actor() == "traces"
                await pilot.press("d")
                await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), "details")
                text = app.screen.text  # type: ignore[attr-defined]
                assert text.startswith("traces  (plexa.examples.imaging:RoiTraces)")
                assert "options:" in text and "state running" in text
                shots["details"] = screen_text(app)
                await pilot.press("escape")
                await pilot.press("e")
                await wait_until(pilot, lambda: isinstance(app.screen, PromptScreen), "a prompt")
                await pilot.press(*"n_rois 8")
                shots["prompt"] = screen_text(app)
                await pilot.press("enter")
                await wait_until(pilot, lambda: "set traces: ok" in notes, "the set to be done")
                await pilot.press("k")
                await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
                assert "ends the run" in str(app.screen.question)  # type: ignore[attr-defined]
                shots["confirm"] = screen_text(app)
                await pilot.press("n")
                await pilot.press("q")

        shots: dict[str, str] = {}
        asyncio.run(main())
        assert nexus_states(nexus)["traces"] == "running"
        # the rendered screens (snapshots of their stable text: numbers change every run)
        assert "traces  (plexa.examples.imaging:RoiTraces)" in shots["details"]
        assert "options:" in shots["details"] and "n_rois" in shots["details"]
        assert "n_rois 8" in shots["prompt"] and "set" in shots["prompt"]
        assert "ends the run" in shots["confirm"]
        assert "traces" in shots["confirm"]


def test_progress_and_improved_results_are_shown() -> None:
    with live_run(FIT) as (_, server):
        app = PlexaApp(connector(server))

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:

                def progress() -> str:
                    table = app.query_one("#actors", DataTable)
                    return str(table.get_cell("fit", "progress")) if "fit" in table.rows else ""

                await wait_until(pilot, lambda: "%" in progress(), "a progress bar", 30)
                assert progress().startswith("[") and "/" in progress()
                results = app.query_one("#results", Static)
                await wait_until(
                    pilot, lambda: "best score" in str(results.render()), "a result", 30
                )
                await pilot.press("q")

        asyncio.run(main())


def test_a_run_that_stops_answering_shows_connection_lost_within_a_second() -> None:
    with live_run(drive=False) as (nexus, server):
        answering = threading.Event()
        answering.set()

        def loop() -> None:
            while answering.is_set():
                nexus.poll(0.05)
                server.tick()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        app = PlexaApp(connector(server))

        async def main() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
                answering.clear()
                thread.join()
                silent = time.monotonic()
                # the app pings after QUIET_S without events and gives the ping PING_S: 1 s
                # on a quiet machine; the wait below has slack for a loaded one
                assert QUIET_S + PING_S <= 1.0
                await wait_until(pilot, lambda: not app.connected, "connection lost", 8)
                assert "CONNECTION LOST" in str(app.sub_title)
                print(f"connection lost shown after {time.monotonic() - silent:.2f} s")
                await pilot.press("q")

        asyncio.run(main())


def test_run_tui_drives_the_nexus_until_the_app_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    async def script(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PlexaApp)
        await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
        await pilot.press("p")  # only answered if run_tui's thread drives the server
        await wait_until(pilot, lambda: all_shown(app, "paused"), "the table: paused")
        await pilot.press("q")

    ran = drive_with(monkeypatch, script)
    nexus = plexa.Nexus(plexa.load(EXAMPLE))
    server = ControlServer(nexus)
    try:
        outcome = run_tui(server=server)
    finally:
        server.close()
    assert len(ran) == 1 and not server.quit_requested
    assert outcome.report.clean, outcome.report  # leaving the UI stopped and quit the run
    assert {a["state"] for a in outcome.status["actors"].values()} == {"stopped"}


def test_run_tui_returns_when_the_run_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = threading.Event()

    async def script(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PlexaApp)
        await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
        seen.set()  # until() turns true: the app must leave by itself
        await wait_until(pilot, lambda: not app.is_running, "the app to exit", timeout=5)

    drive_with(monkeypatch, script)
    server = ControlServer(plexa.Nexus(plexa.load(EXAMPLE)))
    try:
        run_tui(server=server, until=seen.is_set)
    finally:
        server.close()
    assert seen.is_set()


def test_run_client_attaches_to_the_only_live_run(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PlexaError, match="no running pipeline"):
        run_client("nothing-by-this-name")

    async def script(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, PlexaApp)
        await wait_until(pilot, lambda: all_shown(app, "running"), "3 running actors")
        await pilot.press("q")

    ran = drive_with(monkeypatch, script)
    with live_run() as (nexus, _):
        run_client(None)
        run_client("imaging")
        assert len(ran) == 2
        assert set(nexus_states(nexus).values()) == {"running"}
    with pytest.raises(PlexaError, match="running: none"):
        run_client(None)
