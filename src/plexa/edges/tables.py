"""The status document as plain-text tables: actors, links, progress bars.

Plain text, not Rich tables: the same lines go to a terminal, a pipe or a log file, nothing
is wrapped or cut at 80 columns, nothing is read as markup (a ``[##..]`` bar stays a bar),
and the control path does not import Rich. ``plexa run`` shows the same text live.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["ProgressRates", "eta_text", "grid", "progress_bar", "render_status"]


def grid(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks; ``align``
    has one letter per column: ``l`` flush left (names), ``r`` flush right (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _rate(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 or value == 0 else f"{value:.1f}"


def eta_text(seconds: float | None) -> str:
    """``ETA 42 s``, ``ETA 3 min``, ``ETA 1.5 h`` (empty when unknown)."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"ETA {seconds:.0f} s"
    if seconds < 5400:
        return f"ETA {seconds / 60:.0f} min"
    return f"ETA {seconds / 3600:.1f} h"


def progress_bar(
    progress: dict[str, Any] | None, rate: float | None = None, width: int = 20
) -> str:
    """``[##########..........]  50%  12/24  3.1/s  ETA 4 s  message``.

    Without a total, the count and the message alone; ``rate`` (units per second) adds the
    rate and, with a total, the time left.
    """
    if not progress:
        return ""
    done, total = float(progress["done"]), progress.get("total")
    note = str(progress.get("message") or "")
    parts: list[str] = []
    if total:
        frac = max(0.0, min(1.0, done / float(total)))
        filled = int(frac * width)
        parts += [f"[{'#' * filled}{'.' * (width - filled)}]", f"{frac:4.0%}"]
        parts.append(f"{done:g}/{float(total):g}")
    else:
        parts.append(f"{done:g}")
    if rate:
        parts.append(f"{rate:.3g}/s")
        if total and rate > 0:
            parts.append(eta_text(max(0.0, (float(total) - done) / rate)))
    if note:
        parts.append(note)
    return "  ".join(p for p in parts if p)


class ProgressRates:
    """Progress rates per actor from successive status documents (for the bar's rate and ETA)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._seen: dict[str, list[tuple[float, float]]] = {}

    def update(self, status: dict[str, Any], now: float | None = None) -> dict[str, float]:
        """Record the progress in ``status``; returns units per second by actor."""
        now = time.monotonic() if now is None else now
        rates: dict[str, float] = {}
        for name, actor in status.get("actors", {}).items():
            progress = actor.get("progress")
            if not progress:
                continue
            seen = self._seen.setdefault(name, [])
            done = float(progress["done"])
            if seen and done < seen[-1][1]:
                seen.clear()  # started again (a restart, a new run)
            seen.append((now, done))
            while len(seen) > 2 and now - seen[1][0] >= self.window:
                seen.pop(0)
            t0, d0 = seen[0]
            if now > t0 and done > d0:
                rates[name] = (done - d0) / (now - t0)
        return rates


def _actor_rows(actors: dict[str, Any], rates: dict[str, float]) -> list[list[str]]:
    rows = []
    for name, a in actors.items():
        rss = a.get("rss_bytes")
        rows.append(
            [
                f"{name}@{a['host']}" if a.get("host") else name,
                str(a.get("state", "")),
                str(a.get("restarts", 0)),
                str(a.get("pid") or "-"),
                _rate(a.get("rate_in")),
                _rate(a.get("rate_out")),
                _num(a.get("msgs_in")),
                _num(a.get("msgs_out")),
                _num(a.get("handler_p50_us")),
                _num(a.get("handler_p99_us")),
                _num(a.get("cpu_percent"), "{:.1f}"),
                _num(None if rss is None else rss / 2**20, "{:.1f}"),
                progress_bar(a.get("progress"), rates.get(name)),
            ]
        )
    return rows


def _link_rows(links: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, link in links.items():
        bps = link.get("bytes_per_s")
        rows.append(
            [
                name,
                str(link.get("policy", "")),
                f"{link.get('depth', 0)}/{link.get('capacity', 0)}",
                _num(link.get("sent")),
                _num(link.get("dropped")),
                _num(link.get("lost")),
                _rate(link.get("rate")),
                _num(None if bps is None else bps / 1e6, "{:.1f}"),
                _num(link.get("latency_p50_us")),
                _num(link.get("latency_p99_us")),
            ]
        )
    return rows


ACTOR_COLUMNS = (
    "actor", "state", "restarts", "pid", "in/s", "out/s", "in", "out",
    "p50 us", "p99 us", "cpu %", "rss MB", "progress",
)  # fmt: skip
"""Columns of the actors table (handler times in microseconds)."""
LINK_COLUMNS = (
    "link", "policy", "depth/cap", "sent", "dropped", "lost", "rate/s", "MB/s",
    "p50 us", "p99 us",
)  # fmt: skip
"""Columns of the links table (latency from send to handler, in microseconds)."""


def render_status(status: dict[str, Any], rates: dict[str, float] | None = None) -> str:
    """The status document (``plexa run --json``'s shape) as a header line and two tables,
    followed by one line per failed actor."""
    run = status.get("run", {})
    head = f"{run.get('name', '?')}  {run.get('state', '?')}  up {run.get('uptime_s', 0):.1f} s"
    if run.get("id"):
        head += f"  (run {run['id']})"
    if run.get("busy"):
        head += f"  busy: {run['busy']}"
    actors = status.get("actors", {})
    lines = [head, ""]
    rows = _actor_rows(actors, rates or {})
    progress_col = any(r[-1] for r in rows)
    headers = list(ACTOR_COLUMNS if progress_col else ACTOR_COLUMNS[:-1])
    align = ("ll" + "r" * 10 + "l")[: len(headers)]
    lines += grid(headers, [r[: len(headers)] for r in rows], align)
    nodes: dict[str, list[str]] = {}
    for name, a in actors.items():
        if a.get("node"):
            nodes.setdefault(a["node"], []).append(name)
    lines += [f"ray node {node}: {', '.join(names)}" for node, names in nodes.items()]
    links = status.get("links", {})
    if links:
        lines += ["", *grid(LINK_COLUMNS, _link_rows(links), "ll" + "r" * 8)]
    for name, a in actors.items():
        failure = a.get("failure")
        if failure:
            lines.append(
                f"{name}: {failure['kind']} in {failure['phase']}: {failure['error']}".rstrip()
            )
    return "\n".join(lines)
