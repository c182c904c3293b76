"""What the app passes down to its screens, and the messages screens post up: screens never import the app."""

from __future__ import annotations

from typing import Protocol

from textual.message import Message

from ollama_connector.tui.client import FleetSnapshot, HubClient
from ollama_connector.tui.render import History


class Fleet(Protocol):
    """The app as its screens see it: the hub's client, the poll interval, the latest snapshot (a reactive
    the screens watch), the history of the last polls, and the clock."""

    client: HubClient
    interval: float
    history: History
    snapshot: FleetSnapshot | None

    def clock(self) -> float: ...


class ProblemReported(Message):
    """Something failed that nobody expected; the app shows it in its header."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PollNow(Message):
    """A screen changed the fleet (a pull, a delete): the app polls the hub at once."""
