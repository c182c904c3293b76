"""A node's details: every field, its models and metadata, and sparklines of the last minutes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from ollama_connector.tui.client import FleetSnapshot
from ollama_connector.tui.render import (
    address,
    age,
    count,
    parse_time,
    size_text,
    slots_of,
    spark,
    status_text,
    vram_used,
)
from ollama_connector.tui.screens.fleet import Fleet


class DetailsScreen(Screen[None]):
    """Every field of one node, its models and metadata, and sparklines of the last minutes."""

    BINDINGS = [Binding("escape,q", "dismiss", "Back")]

    def __init__(self, node_id: str, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet
        self.node_id = node_id

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
        self.watch(self.fleet, "snapshot", self.show, init=True)

    def show(self, snapshot: FleetSnapshot | None) -> None:
        node = snapshot.nodes.get(self.node_id) if snapshot else None
        if node is None:
            self.query_one("#fields", Static).update(f"{self.node_id}: no longer registered at the hub")
            return
        seen = age(self.fleet.clock() - parse_time(node["last_seen"]))
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
            ("last error", last_error(node, self.fleet.clock())),
            ("last seen", Text(f"{seen} ago")),  # an age, not a timestamp: it reads at a glance
        ):
            fields.append(f"{name:<14}", style="bold").append_text(value).append("\n")
        self.query_one("#fields", Static).update(fields)
        width = max(10, self.size.width - 6)
        for key in ("cpu", "memory", "jobs"):
            series = self.fleet.history.of(self.node_id, key)
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


SIZES = {"memory_total", "disk_free_bytes", "size", "size_vram"}  # bytes, shown as GB or MB


def flat(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested fields as dotted names and their values, in order."""
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            rows += flat(value, f"{prefix}{key}.")
        elif key in SIZES and isinstance(value, int) and not isinstance(value, bool):
            rows.append((f"{prefix}{key}", size_text(value)))
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
