"""The key list."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    KEYS = [
        ("↑ ↓ PgUp PgDn", "move in the node table"),
        ("Enter", "details of the selected node"),
        ("s", "cycle the sort column"),
        ("/", "filter nodes (Enter or Esc leaves the filter box)"),
        ("p", "send a test prompt"),
        ("J", "recent jobs: node, duration, tokens/s, errors (⧗: async)"),
        ("m", "models: where each is, pull one onto nodes (p), delete one (d)"),
        ("r", "poll the hub now"),
        ("?", "this help"),
        ("q", "quit"),
    ]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for key, what in self.KEYS:
            table.add_row(key, what)
        with Vertical(id="help-panel"):
            yield Label("Keys", id="help-title")
            yield Static(table)
