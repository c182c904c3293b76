"""The screens over the node table: a node's details, the prompt panel, and the key list."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.validation import Integer, Number
from textual.widgets import Footer, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from ollama_connector.tui.client import FleetSnapshot, HubClient
from ollama_connector.tui.render import (
    address,
    age,
    count,
    parse_time,
    slots_of,
    spark,
    status_text,
    vram_used,
)

if TYPE_CHECKING:
    from ollama_connector.tui.app import OllamaTop


class DetailsScreen(Screen[None]):
    """Every field of one node, its models and metadata, and sparklines of the last minutes."""

    BINDINGS = [Binding("escape,q", "dismiss", "Back")]

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    @property
    def top(self) -> OllamaTop:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="fields")
            for key, label in (("cpu", "CPU"), ("memory", "Memory"), ("jobs", "Active jobs")):
                yield Label(label, id=f"label-{key}", classes="spark-label")
                yield Static("", id=f"spark-{key}", classes="spark")
            yield Static(id="models")
            yield Static(id="metadata")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.top, "snapshot", self.show, init=True)

    def show(self, snapshot: FleetSnapshot | None) -> None:
        node = snapshot.nodes.get(self.node_id) if snapshot else None
        if node is None:
            self.query_one("#fields", Static).update(f"{self.node_id}: no longer registered at the hub")
            return
        seen = age(self.top.clock() - parse_time(node["last_seen"]))
        fields = Text()
        for name, value in (
            ("node", Text(node["node_id"])),
            ("status", status_text(node["status"])),
            ("hub dials", Text(address(node))),
            ("engine", Text("OpenAI-compatible server" if node.get("backend") == "openai" else "Ollama")),
            ("advertises", Text(f"{node['ipv4'] or '-'} / {node['ipv6'] or '-'}")),
            ("cpu / memory", Text(f"{node['load']['cpu'] * 100:.0f}% / {node['load']['memory'] * 100:.0f}%")),
            ("active jobs", Text(str(node["active_jobs"]))),
            ("slots", slots_text(node)),
            ("vram", vram_text(node)),
            ("served", Text(str(node.get("served", 0)))),
            ("failures", Text(str(node["failure_count"]))),
            ("last error", last_error(node, self.top.clock())),
            ("last seen", Text(f"{seen} ago")),  # an age, not a timestamp: it reads at a glance
        ):
            fields.append(f"{name:<14}", style="bold").append_text(value).append("\n")
        self.query_one("#fields", Static).update(fields)
        width = max(10, self.size.width - 6)
        for key in ("cpu", "memory", "jobs"):
            series = self.top.history.of(self.node_id, key)
            top = max([*series, 1.0]) if key == "jobs" else 1.0
            self.query_one(f"#spark-{key}", Static).update(spark(series, width, top))
            latest = series[-1] if series else 0.0
            shown = f"{latest:.0f}" if key == "jobs" else f"{latest * 100:.0f}%"
            label = {"cpu": "CPU", "memory": "Memory", "jobs": "Active jobs"}[key]
            polls = count(len(series), "poll")
            self.query_one(f"#label-{key}", Label).update(f"{label}: {shown} (last {polls})")
        self.query_one("#models", Static).update(models_block(node))
        self.query_one("#metadata", Static).update(fields_text("Metadata", node["metadata"]))


def last_error(node: dict[str, Any], now: float) -> Text:
    error = node.get("last_error")
    if not error:
        return Text("none")
    when = age(now - parse_time(error["at"]))
    return Text(error["message"], style="red").append(f" ({when} ago)")


def slots_text(node: dict[str, Any]) -> Text:
    slots = slots_of(node)
    parallel = (node.get("capacity") or {}).get("num_parallel", 1)
    return Text(f"{slots['used']} of {slots['total']} in use ({parallel} per loaded model)")


def vram_text(node: dict[str, Any]) -> Text:
    usage = vram_used(node)
    gpus = node.get("gpus")
    text = Text("none: a CPU node" if gpus == [] and not usage else "unknown" if not usage else "")
    if usage:
        text.append(f"{usage[0] / 1e9:.1f} of {usage[1] / 1e9:.1f} GB filled by loaded models")
    for gpu in gpus or []:
        used, total = gpu["memory_used"] / 1e9, gpu["memory_total"] / 1e9
        text.append(
            f"\n{'':14}{gpu['name']}: {used:.1f}/{total:.1f} GB, {gpu['utilization'] * 100:.0f}% busy"
        )
    return text


def models_block(node: dict[str, Any]) -> Text:
    """Each model it has: loaded or not (context, jobs, expiry) and what the hub learned of its speed."""
    text = Text("Models:\n", style="bold")
    loaded = {m["name"]: m for m in node.get("models_loaded") or []}
    speeds = node.get("speeds") or {}
    for name in [*loaded, *(m for m in node["models"] if m not in loaded)]:
        text.append(f"  {name}", style="bold" if name in loaded else "")
        if (entry := loaded.get(name)) is not None:
            state = "loading" if entry.get("loading") else "loaded"
            context = f", context {entry['context_length']}" if entry.get("context_length") else ""
            text.append(f"  {state}{context}, {entry.get('running', 0)} running", style="green")
        if (speed := speeds.get(name)) and speed.get("jobs"):
            rate = f"{speed['tokens_per_second']:.0f} tokens/s, " if speed.get("tokens_per_second") else ""
            seconds = f"{speed['job_seconds']:.1f} s a job" if speed.get("job_seconds") is not None else ""
            text.append(f"  {rate}{seconds} over {count(speed['jobs'], 'job')}", style="cyan")
        text.append("\n")
    if node.get("load_seconds_per_gb") is not None:
        text.append(f"  loads take {node['load_seconds_per_gb']:.2f} s per GB here\n", style="cyan")
    return text if loaded or node["models"] else text.append("  none\n")


def flat(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested fields as dotted names and their values, in order."""
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            rows += flat(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", "-" if value is None else str(value)))
    return rows


def fields_text(title: str, mapping: dict[str, Any]) -> Text:
    """A titled block of `name  value` lines, the values aligned."""
    rows = flat(mapping)
    text = Text(f"{title}:\n", style="bold")
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, value in rows:
        text.append(f"  {name:<{width}}", style="bold").append(value + "\n")
    return text if rows else text.append("  none\n")


class ProblemReported(Message):
    """Something failed that nobody expected; the app shows it in its header."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


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
