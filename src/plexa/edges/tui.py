"""The terminal UI: ``plexa client NAME`` and ``plexa run --tui``.

:class:`PlexaApp` shows a run's actors, links, throughput and merged log, and steers the run
with single keys. It never blocks its event loop: events are received by a worker thread and
commands are sent from worker threads. zmq sockets must not be shared between threads, so
the app takes a *factory* of clients and every thread makes (and closes) its own.
"""

from __future__ import annotations

import collections
import contextlib
import shlex
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, RichLog, Sparkline, Static
from textual.worker import get_current_worker

from plexa.core import protocol as proto
from plexa.edges.cli_ctl import parse_value
from plexa.edges.client import Client, find_run, load_record
from plexa.edges.tables import ProgressRates
from plexa.edges.tui_rows import (
    ACTOR_COLUMNS,
    LINK_COLUMNS,
    WIDTHS,
    actor_rows,
    fill,
    link_rows,
    state_cell,
)
from plexa.edges.tui_screens import ConfirmScreen, DetailScreen, PromptScreen, actor_details
from plexa.errors import PlexaError
from plexa.nexus.cleanup import list_runs
from plexa.nexus.logs import format_log
from plexa.nexus.server import ControlServer

__all__ = ["PlexaApp", "run_client", "run_tui"]

LEVELS = (("DEBUG", 10), ("INFO", 20), ("WARNING", 30), ("ERROR", 40))
"""The log pane's level filter, in the order ``l`` cycles through them."""
HISTORY = 60
"""How many metrics updates the throughput sparkline covers (about 30 s)."""
COMMAND_TIMEOUT = 60.0
"""Lifecycle commands wait for every actor, so they may take a while."""
QUIET_S = 0.6
"""With no event for this long (metrics come twice a second) the app pings the run; with the
ping's own deadline, a run that died shows as "connection lost" within a second."""
PING_S = 0.4
_LEVEL_STYLES = {10: "dim", 30: "yellow", 40: "red", 50: "bold red"}

class PlexaApp(App[None]):
    """A live view of one run, steering it with single keys.

    Keys: p/r/s pause, resume, stop every actor (P/R/S: the selected one), t setup, u run;
    on the selected actor: a abort, k kill (asks), v revive, e set (prompts KEY VALUE),
    i invoke (prompts METHOD [ARG...]), d or Enter details; l log level; q detach (under
    ``plexa run --tui``: quit), Q quit the run (asks).

    ``connect`` makes a new :class:`Client` for the run; it is called once per thread that
    talks to the run. ``until``, if given, is polled: when it returns true the app exits.
    """

    TITLE = "plexa"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    DataTable { height: auto; max-height: 12; margin-bottom: 1; }
    #throughput { height: 3; }
    #rate { width: 28; padding: 1 1; }
    #spark { width: 1fr; height: 3; }
    #results { height: auto; max-height: 4; color: $success; }
    #log { height: 1fr; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("p", "lifecycle('pause')", "pause"),
        Binding("r", "lifecycle('resume')", "resume"),
        Binding("P", "lifecycle('pause', True)", "pause sel", show=False),
        Binding("R", "lifecycle('resume', True)", "resume sel", show=False),
        Binding("t", "lifecycle('setup')", "setup", show=False),
        Binding("u", "lifecycle('run')", "run", show=False),
        Binding("s", "lifecycle('stop')", "stop"),
        Binding("S", "lifecycle('stop', True)", "stop sel", show=False),
        Binding("a", "lifecycle('abort', True)", "abort"),
        Binding("k", "kill", "kill"),
        Binding("v", "lifecycle('revive', True)", "revive"),
        Binding("e", "set_option", "set"),
        Binding("i", "invoke", "invoke"),
        Binding("enter", "details", "details", show=False),
        Binding("d", "details", "details"),
        Binding("l", "cycle_level", "level"),
        Binding("q", "detach", "detach"),
        Binding("Q", "quit_run", "quit run"),
    ]

    def __init__(
        self,
        connect: Callable[[], Client],
        *,
        until: Callable[[], bool] | None = None,
        detachable: bool = True,
    ) -> None:
        super().__init__()
        self.connect = connect
        self.until = until
        self.detachable = detachable
        """False under ``plexa run --tui``: leaving the UI ends the run, and ``q`` says so."""
        self.status: dict[str, Any] = {"actors": {}, "links": {}}
        self.config: dict[str, Any] | None = None
        self.latest: dict[str, dict[str, Any]] = {}
        self.progress_rates = ProgressRates()
        self.rates: dict[str, float] = {}
        self.run_name = "?"
        self.run_state = "?"
        self.uptime = 0.0
        self.level = 1  # index into LEVELS: INFO
        self.logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)
        self.history: collections.deque[float] = collections.deque([0.0] * HISTORY, HISTORY)
        self.connected = True

    # ----- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Header, actors, links, throughput, log, footer."""
        yield Header()
        actors: DataTable[Text | str] = DataTable(id="actors", cursor_type="row")
        links: DataTable[Text | str] = DataTable(id="links", cursor_type="row")
        for table, columns in ((actors, ACTOR_COLUMNS), (links, LINK_COLUMNS)):
            for label in columns:
                table.add_column(label, width=WIDTHS.get(label, 9), key=label)
            yield table
        with Horizontal(id="throughput"):
            yield Static("throughput", id="rate")
            yield Sparkline(list(self.history), id="spark")
        yield Static("", id="results")
        yield RichLog(id="log", max_lines=2000, markup=False, highlight=False, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        """Start receiving events (and watching ``until``)."""
        if not self.detachable:
            self.bind("q", "detach", description="quit")
        self._show_header()
        self._receive()
        if self.until is not None:
            self.set_interval(0.2, self._check_until)

    def _check_until(self) -> None:
        if self.until is not None and self.until():
            self.exit()

    def _show_header(self) -> None:
        self.title = f"plexa: {self.run_name}"
        link = "" if self.connected else " · CONNECTION LOST"
        self.sub_title = (
            f"{self.run_state} · up {self.uptime:.0f} s · logs ≥ {LEVELS[self.level][0]}{link}"
        )

    # ----- events (worker thread) -------------------------------------------------------------
    @work(thread=True, group="events", exit_on_error=False)
    def _receive(self) -> None:
        """Subscribe, hand the snapshot to the UI, then hand over events in small batches."""
        worker = get_current_worker()
        with self.connect() as client:
            try:
                snap = client.subscribe()
            except PlexaError as exc:
                self._to_ui(self.notify, f"cannot subscribe: {exc}", severity="error", markup=False)
                return
            self._to_ui(self._load_snapshot, snap)
            seq, last = snap["seq"], time.monotonic()
            while not worker.is_cancelled:
                batch: list[proto.Event] = []
                until = time.monotonic() + 0.1
                for event in client.events(timeout=0.1):
                    if event.seq > seq:
                        batch.append(event)
                    if worker.is_cancelled or time.monotonic() > until or len(batch) >= 500:
                        break
                if batch:
                    last = time.monotonic()
                    self._to_ui(self._apply, batch)
                elif time.monotonic() - last > QUIET_S:
                    try:
                        client.request("ping", timeout=PING_S)
                    except PlexaError:
                        self._to_ui(self._set_connected, False)
                    else:
                        self._to_ui(self._set_connected, True)
                    last = time.monotonic()

    def _to_ui(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` on the UI thread (waiting for it), unless the app has closed."""
        if self.is_running:
            with contextlib.suppress(RuntimeError):  # the app closed meanwhile
                self.call_from_thread(fn, *args, **kwargs)

    # ----- applying what was received (UI thread) ---------------------------------------------
    def _load_snapshot(self, snap: dict[str, Any]) -> None:
        self.config = snap.get("config")
        for actor, reports in (snap.get("latest") or {}).items():
            self.latest.setdefault(actor, {}).update(reports)
        self._show_results()
        self._show_status(snap["status"])
        for entry in snap["logs"]:
            self._add_log(entry)

    def _apply(self, events: Iterable[proto.Event]) -> None:
        self._set_connected(True)
        for event in events:
            data = event.data
            if event.kind == "metrics":
                self._show_status(data)
            elif event.kind == "log":
                self._add_log(data)
            elif event.kind == "state":
                self._set_actor_state(data["actor"], data["state"])
            elif event.kind == "run":
                self.run_state = data["state"]
                self._show_header()
            elif event.kind == "failure":
                self._set_actor_state(data["actor"], "failed")
                msg = f"{data['actor']} failed ({data.get('phase')}): {data.get('error')}"
                self.notify(msg, severity="error", timeout=10, markup=False)
            elif event.kind in ("progress", "improved", "aborted", "checkpoint"):
                self.latest.setdefault(data["actor"], {})[event.kind] = data
                if event.kind != "progress":
                    self._show_results()
                if event.kind == "aborted":
                    msg = f"{data['actor']} aborted; partial result score {data.get('score')}"
                    self.notify(msg, timeout=8, markup=False)

    def _show_results(self) -> None:
        """One line per actor with an improved (or aborted) result: its score and summary."""
        lines = []
        for actor, reports in self.latest.items():
            improved = reports.get("improved")
            if improved:
                score = improved.get("score")
                lines.append(
                    f"{actor}: best score {score if score is not None else '-'}  "
                    f"{improved.get('summary', '')}".rstrip()
                )
            aborted = reports.get("aborted")
            if aborted:
                lines.append(f"{actor}: aborted, partial result score {aborted.get('score')}")
        self.query_one("#results", Static).update(Text("\n".join(lines)))

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._show_header()
            if not connected:
                self.notify("the run does not answer", severity="error", timeout=10)

    def _set_actor_state(self, actor: str, state: str) -> None:
        table = self.query_one("#actors", DataTable)
        if actor in table.rows:
            table.update_cell(actor, "state", state_cell(state))

    def _show_status(self, status: dict[str, Any]) -> None:
        run = status["run"]
        self.run_name, self.run_state = run["name"], run["state"]
        self.uptime = run.get("uptime_s", 0.0)
        self.status = status
        self.rates = self.progress_rates.update(status)
        self._show_header()
        actors, links = actor_rows(status, self.rates), link_rows(status)
        fill(self.query_one("#actors", DataTable), ACTOR_COLUMNS, actors)
        fill(self.query_one("#links", DataTable), LINK_COLUMNS, links)
        total = sum(a.get("rate_out", 0.0) for a in status["actors"].values())
        self.history.append(total)
        self.query_one("#spark", Sparkline).data = list(self.history)
        self.query_one("#rate", Static).update(f"out: {total:,.0f} msgs/s")

    def _add_log(self, entry: dict[str, Any]) -> None:
        self.logs.append(entry)
        if entry["level"] >= LEVELS[self.level][1]:
            style = _LEVEL_STYLES.get(entry["level"], "")
            self.query_one("#log", RichLog).write(Text(format_log(entry), style=style))

    # ----- actions ----------------------------------------------------------------------------
    def action_cycle_level(self) -> None:
        """Show only log records at or above the next level (DEBUG, INFO, WARNING, ERROR)."""
        self.level = (self.level + 1) % len(LEVELS)
        log = self.query_one("#log", RichLog)
        log.clear()
        entries, self.logs = list(self.logs), collections.deque(maxlen=self.logs.maxlen)
        for entry in entries:
            self._add_log(entry)
        self._show_header()

    def selected_actor(self) -> str | None:
        """The actor under the actors table's cursor."""
        table = self.query_one("#actors", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_lifecycle(self, command: str, selected: bool = False) -> None:
        """Send a lifecycle command to every actor, or only to the selected one."""
        actor = self.selected_actor() if selected else None
        if selected and actor is None:
            self.notify("no actor selected", severity="warning")
            return
        self._command(command, actor)

    def action_detach(self) -> None:
        """Leave the UI (a client: the run goes on; ``plexa run --tui``: the run ends)."""
        self.exit()

    def action_quit_run(self) -> None:
        """Ask, then tell the run to quit and leave."""

        def answered(yes: bool | None) -> None:
            if yes:
                self._command("quit", None)

        self.push_screen(ConfirmScreen(f"Quit the run {self.run_name!r}?"), answered)

    def _selected_or_warn(self) -> str | None:
        actor = self.selected_actor()
        if actor is None:
            self.notify("no actor selected", severity="warning")
        return actor

    def action_kill(self) -> None:
        """Ask, then SIGKILL the selected actor (its restart policy applies)."""
        actor = self._selected_or_warn()
        if actor is None:
            return
        spec = (self.config or {}).get("actors", {}).get(actor, {})
        ends = (
            spec.get("restart") == "never"
            and (self.config or {}).get("settings", {}).get("on_failure") == "stop"
        )
        question = f"Kill {actor!r}?" + (" It never restarts: this ends the run." if ends else "")

        def answered(yes: bool | None) -> None:
            if yes:
                self._command("kill", actor)

        self.push_screen(ConfirmScreen(question), answered)

    def action_set_option(self) -> None:
        """Prompt for ``KEY VALUE`` and set that option of the selected actor."""
        actor = self._selected_or_warn()
        if actor is None:
            return

        def answered(text: str | None) -> None:
            key, _, value = (text or "").partition(" ")
            if key and value.strip():
                self._command("set", actor, key=key, value=parse_value(value.strip()))
            elif text:
                self.notify("give KEY VALUE", severity="warning")

        self.push_screen(PromptScreen(f"set an option of {actor}:", "KEY VALUE"), answered)

    def action_invoke(self) -> None:
        """Prompt for ``METHOD [ARG...]`` and call it on the selected actor."""
        actor = self._selected_or_warn()
        if actor is None:
            return

        def answered(text: str | None) -> None:
            try:
                words = shlex.split(text or "")
            except ValueError as exc:
                self.notify(str(exc), severity="warning", markup=False)
                return
            if words:
                args = [parse_value(w) for w in words[1:]]
                self._command("invoke", actor, method=words[0], args=args)

        self.push_screen(PromptScreen(f"invoke on {actor}:", "METHOD [ARG...]"), answered)

    def action_details(self) -> None:
        """Show the selected actor's options, progress, results and last failure."""
        actor = self._selected_or_warn()
        if actor is None:
            return
        text = actor_details(
            actor, self.status, self.config, self.latest.get(actor, {}), self.rates.get(actor)
        )
        self.push_screen(DetailScreen(text))

    @work(thread=True, group="commands", exit_on_error=False)
    def _command(self, command: str, actor: str | None, **args: Any) -> None:
        """Send one command from a worker thread and show the answer in a notification."""
        what = f"{command} {actor}" if actor else command
        try:
            with self.connect() as client:
                resp = client.request_raw(command, actor, timeout=COMMAND_TIMEOUT, **args)
        except PlexaError as exc:
            self._to_ui(self.notify, f"{what}: {exc}", severity="error", markup=False)
            return
        if not resp.ok:
            msg = f"{what} refused: {resp.error}"
            self._to_ui(self.notify, msg, severity="error", timeout=8, markup=False)
            return
        value = resp.value
        if isinstance(value, dict) and isinstance(value.get("run"), str):
            shown = f"ok ({value['run']})"
        else:
            shown = "ok" if value is None else f"{value!r}"[:200]
        self._to_ui(self.notify, f"{what}: {shown}", markup=False)
        if command == "quit":
            self._to_ui(self.exit)


def run_client(name: str | None = None) -> None:
    """Show the UI for the live run called ``name`` (or the only live run, if ``None``)."""
    if name is None:
        alive = [r for r in list_runs() if r.alive and "control" in r.record.get("endpoints", {})]
        if len(alive) != 1:
            names = ", ".join(r.name for r in alive) or "none"
            raise PlexaError(f"name the run to attach to (running: {names})")
        name = alive[0].name
    record = load_record(name) if name.endswith(".json") else find_run(name).record

    def connect() -> Client:
        return Client.from_record(record)

    with connect() as client:  # fail here, on a plain terminal, if the run does not answer
        client.request("ping", timeout=3.0)
    PlexaApp(connect).run()


def run_tui(
    *,
    server: ControlServer,
    hold: bool = False,
    duration: float | None = None,
    until: Callable[[], bool] | None = None,
) -> Any:
    """Drive ``server``'s nexus in a thread (:func:`plexa.nexus.driver.drive`, so the run is
    stopped and quit there) and show the UI in this one; returns the run's outcome.

    The run ends when the UI is left (``q``), when a client sends ``quit``, after
    ``duration``, when ``until()`` is true, or when an actor fails for good.
    """
    from plexa.nexus.driver import drive

    left = threading.Event()
    ended = threading.Event()
    outcome: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(
                drive(
                    server.nexus,
                    hold=hold,
                    duration=duration,
                    until=lambda: left.is_set() or (until is not None and until()),
                )
            )
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            ended.set()

    def connect() -> Client:
        return Client.from_record(server.record())

    # The app watches `ended` itself: calling app.exit() from the driving thread through
    # call_from_thread could block forever if the app were closing at that very moment.
    app = PlexaApp(connect, until=ended.is_set, detachable=False)
    thread = threading.Thread(target=run, name="plexa-nexus", daemon=True)
    thread.start()
    try:
        app.run()
    finally:
        left.set()
        thread.join()
    if errors:
        raise errors[0]
    return outcome[0]
