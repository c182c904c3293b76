"""The prompt panel: send a test prompt to POST /jobs and watch it stream."""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import Integer, Number
from textual.widgets import Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from ollama_connector.tui.client import HubClient
from ollama_connector.tui.screens.fleet import ProblemReported


class PromptScreen(ModalScreen[None]):
    """Send a test prompt to POST /jobs and watch it stream."""

    BINDINGS = [Binding("escape", "cancel_or_close", "Cancel / close")]
    # What each option accepts; the placeholder says it, and a wrong value is named before anything is sent.
    OPTIONS = {
        "temperature": ("temperature (0-2)", Number(minimum=0, maximum=2), float),
        "num_predict": ("num_predict (tokens, -1: no limit)", Integer(minimum=-2), int),
    }

    def __init__(self, models: list[str], client: HubClient) -> None:
        super().__init__()
        self.models = models
        self.client = client
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-panel"):
            yield Label("Test prompt: Enter sends, Esc cancels or closes", id="prompt-title")
            yield Select(
                [(m, m) for m in self.models], prompt="model", id="model", allow_blank=not self.models
            )
            yield Input(placeholder="Prompt", id="prompt")
            with Horizontal(id="prompt-options"):
                for name, (placeholder, validator, _) in self.OPTIONS.items():
                    yield Input(placeholder=placeholder, id=name, validators=[validator], valid_empty=True)
            with VerticalScroll(id="answer-box"):
                yield Static("", id="answer")
            yield Label("", id="prompt-status")

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()

    def action_cancel_or_close(self) -> None:
        if self.running:
            self.workers.cancel_group(self, "prompt")
            self.running = False
            self.query_one("#prompt-status", Label).update("cancelled")
        else:
            self.dismiss()

    @on(Input.Submitted)
    def send(self) -> None:
        model = self.query_one("#model", Select).value
        prompt = self.query_one("#prompt", Input).value.strip()
        status = self.query_one("#prompt-status", Label)
        if model in (Select.BLANK, None) or not prompt:
            status.update("choose a model and type a prompt")
            return
        options: dict[str, Any] = {}
        for name, (_, validator, convert) in self.OPTIONS.items():
            box = self.query_one(f"#{name}", Input)
            if not (value := box.value.strip()):
                continue
            result = validator.validate(value)
            if not result.is_valid:
                status.update(f"[red]{name}[/red]: {'; '.join(result.failure_descriptions)}")
                box.focus()
                return
            options[name] = convert(value)
        body = {"model": model, "prompt": prompt, "stream": True, **({"options": options} if options else {})}
        self.stream(body)

    @work(exclusive=True, group="prompt", exit_on_error=False)
    async def stream(self, body: dict[str, Any]) -> None:
        answer, status = self.query_one("#answer", Static), self.query_one("#prompt-status", Label)
        self.running = True
        text, count, started = "", 0, time.monotonic()
        answer.update("")
        status.update("waiting for the first token…")
        try:
            async for event in self.client.run_prompt(body):
                if event.error is not None:
                    where = escape(event.node_id or "the hub")
                    status.update(f"[red]error[/red] from {where}: {escape(event.error)}")
                    return
                text += event.text
                count += 1 if event.text else 0
                answer.update(text)
                elapsed = time.monotonic() - started
                final = event.final
                if final and final.get("eval_count") and final.get("eval_duration"):
                    rate = final["eval_count"] / final["eval_duration"] * 1e9
                    count = final["eval_count"]
                else:
                    rate = count / elapsed if elapsed > 0 else 0.0
                done = " · done" if final else ""
                status.update(
                    f"node {event.node_id} · {count} tokens · {rate:.1f} tok/s · {elapsed:.1f} s{done}"
                )
        finally:
            self.running = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.query_one("#prompt-status", Label).update(
                f"[red]failed[/red]: {escape(repr(event.worker.error))}"
            )
            self.post_message(ProblemReported(f"the prompt failed: {event.worker.error!r}"))
