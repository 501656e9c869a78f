"""What the terminal UI's tables show: one row of cells per actor and per link, made from the
status document (the same one ``plexa ctl NAME status --json`` prints)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from plexa.edges.tables import progress_bar

__all__ = [
    "ACTOR_COLUMNS",
    "LINK_COLUMNS",
    "WIDTHS",
    "actor_rows",
    "fill",
    "link_rows",
    "state_cell",
]

ACTOR_COLUMNS = ("actor", "state", "in/s", "out/s", "p50 µs", "p99 µs", "restarts", "progress")
ACTOR_FIELDS = ("rate_in", "rate_out", "handler_p50_us", "handler_p99_us", "restarts")
LINK_COLUMNS = ("link", "policy", "depth", "dropped", "lost", "p50 µs", "p99 µs", "msgs/s")
LINK_FIELDS = ("depth", "dropped", "lost", "latency_p50_us", "latency_p99_us", "rate")
WIDTHS = {"actor": 18, "link": 30, "state": 11, "progress": 44}
"""Column widths (others: 9)."""
_STATE_STYLES = {"running": "green", "paused": "yellow", "failed": "bold red", "stopped": "dim"}


def number(value: Any, digits: int = 0) -> Text:
    """A right-aligned number, or ``-`` when there is none."""
    if value is None:
        return Text("-", justify="right")
    if isinstance(value, float) and not digits and 0 < abs(value) < 10:
        digits = 1
    return Text(f"{value:,.{digits}f}", justify="right")


def state_cell(state: str) -> Text:
    """An actor's state, coloured (running green, paused yellow, failed red)."""
    return Text(state, style=_STATE_STYLES.get(state, ""))


def actor_rows(status: dict[str, Any], rates: dict[str, Any]) -> dict[str, list[Any]]:
    """Per actor, the cells of :data:`ACTOR_COLUMNS` (``rates``: progress per second)."""
    return {
        name: [
            f"{name}@{a['host']}" if a.get("host") else name,
            state_cell(a["state"]),
            *(number(a.get(f)) for f in ACTOR_FIELDS),
            Text(progress_bar(a.get("progress"), rates.get(name))),
        ]
        for name, a in status["actors"].items()
    }


def link_rows(status: dict[str, Any]) -> dict[str, list[Any]]:
    """Per link, the cells of :data:`LINK_COLUMNS`."""
    return {
        name: [name, ln.get("policy", "?"), *(number(ln.get(f)) for f in LINK_FIELDS)]
        for name, ln in status["links"].items()
    }


def fill(table: DataTable[Any], columns: tuple[str, ...], rows: dict[str, list[Any]]) -> None:
    """Update ``table`` in place (keeping the cursor), adding and removing rows."""
    for key in [k for k in table.rows if k.value not in rows]:
        table.remove_row(key)
    for name, cells in rows.items():
        if name in table.rows:
            for column, cell in zip(columns, cells, strict=True):
                table.update_cell(name, column, cell)
        else:
            table.add_row(*cells, key=name)
