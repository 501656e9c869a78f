"""Modal screens of the terminal UI: a yes/no question, a one-line prompt, an actor's details."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from plexa.edges.tables import progress_bar

__all__ = ["ConfirmScreen", "DetailScreen", "PromptScreen", "actor_details"]

_CSS = """
ConfirmScreen, PromptScreen, DetailScreen { align: center middle; }
#dialog { width: 80%; height: auto; max-height: 90%; border: thick $primary; padding: 1 2;
          background: $surface; }
#detail { height: auto; max-height: 40; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """``question`` with y / n (Escape: no)."""

    DEFAULT_CSS = _CSS
    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(f"{self.question}  [y/n]"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """One line of input: Enter gives it, Escape gives None."""

    DEFAULT_CSS = _CSS
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, question: str, placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question))
            yield Input(placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def actor_details(
    name: str,
    status: dict[str, Any],
    config: dict[str, Any] | None,
    latest: dict[str, Any],
    rate: float | None = None,
) -> str:
    """An actor's details as text: class, state, options, progress, latest result, last
    checkpoint, and its last failure with the traceback."""
    actor = status.get("actors", {}).get(name, {})
    spec = (config or {}).get("actors", {}).get(name, {})
    lines = [
        f"{name}  ({spec.get('target', '?')})",
        f"host {actor.get('host') or '(the nexus)'}, "
        + (f"ray node {actor['node']}, " if actor.get("node") else "")
        + f"state {actor.get('state', '?')}, pid {actor.get('pid') or '-'}, "
        f"restarts {actor.get('restarts', 0)} (policy {spec.get('restart', '?')})",
        "",
        "options:",
    ]
    options = spec.get("options") or {}
    lines += [f"  {k} = {json.dumps(v, default=str)}" for k, v in options.items()] or ["  none"]
    progress = actor.get("progress") or latest.get("progress")
    if progress:
        lines += ["", f"progress: {progress_bar(progress, rate)}"]
    improved = latest.get("improved")
    if improved:
        age = time.time() - float(improved.get("t") or time.time())
        score = improved.get("score")
        lines += [
            "",
            f"latest result ({age:.0f} s ago): score {score if score is not None else '-'}"
            f"  {improved.get('summary', '')}".rstrip(),
        ]
    aborted = latest.get("aborted")
    if aborted:
        lines += ["", f"aborted; partial result score {aborted.get('score')}"]
    checkpoint = latest.get("checkpoint")
    if checkpoint and checkpoint.get("t"):
        lines += ["", f"last checkpoint {time.time() - float(checkpoint['t']):.0f} s ago"]
    failure = actor.get("failure")
    if failure:
        lines += ["", f"last failure: {failure['kind']} in {failure['phase']}: {failure['error']}"]
        if failure.get("traceback"):
            lines += ["", failure["traceback"].rstrip()]
    return "\n".join(lines)


class DetailScreen(ModalScreen[None]):
    """An actor's details (:func:`actor_details`); Escape or Enter closes it."""

    DEFAULT_CSS = _CSS
    BINDINGS = [Binding("escape", "close", "close"), Binding("enter", "close", "close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(Text(self.text), id="detail")

    def action_close(self) -> None:
        self.dismiss(None)
