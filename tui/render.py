"""How nodes look in the terminal: coloured statuses, load bars, ages; and the history behind sparklines."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from rich.text import Text

# Basic ANSI colour names, so a 16-colour terminal shows them as well as a true-colour one.
STATUS_STYLE = {"online": "green", "degraded": "bold red", "offline": "bright_black", "draining": "yellow"}
STATUS_RANK = {"degraded": 0, "offline": 1, "draining": 2, "online": 3}
HISTORY = 300  # samples per node: five minutes at one poll a second


Parts = list[tuple[str, str]]  # runs of (text, Rich style) that make up one cell


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def bar(fraction: float, width: int = 4) -> Parts:
    """A load bar and its percentage: green, yellow from 70 %, red from 90 %."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    style = "red" if fraction >= 0.9 else "yellow" if fraction >= 0.7 else "green"
    return [("█" * filled, style), ("░" * (width - filled), "bright_black"), (f"{fraction * 100:>4.0f}%", "")]


def parse_time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def address(node: dict[str, Any]) -> str:
    """Where the hub dials the node (which the advertised addresses may not be)."""
    if node.get("dial_address"):
        return node["dial_address"]
    host = node.get("ipv4") or node.get("ipv6") or "?"
    return f"[{host}]:{node['port']}" if ":" in host else f"{host}:{node['port']}"


def size_text(size: int | None) -> str:
    """Bytes as a person reads them: 8.2 GB, 350 MB."""
    return "-" if not size else f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


def count(n: int, noun: str) -> str:
    """`1 node`, `3 nodes`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def short_model(name: str) -> str:
    """A model as the table shows it: Ollama's default `:latest` tag left out."""
    return name.removesuffix(":latest")


def models_text(models: list[str], room: int) -> str:
    """As many model names as fit in `room` characters, then `+N` for the rest; at least part of the first."""
    if not models:
        return "none"
    shown: list[str] = []
    for i, name in enumerate(models):
        rest = len(models) - i - 1
        more = f" +{rest}" if rest else ""
        candidate = ",".join([*shown, short_model(name)])
        if len(candidate + more) > room:
            if shown:
                return ",".join(shown) + f" +{len(models) - i}"
            suffix = f" +{rest}" if rest else ""
            return short_model(name)[: max(1, room - len(suffix) - 1)] + "…" + suffix
        shown.append(short_model(name))
    return ",".join(shown)


def loaded_names(node: dict[str, Any]) -> list[str]:
    return [m["name"] for m in node.get("models_loaded") or []]


def models_parts(node: dict[str, Any], room: int) -> Parts:
    """The node's models, those loaded in its Ollama first and in bold."""
    loaded = loaded_names(node)
    ordered = loaded + [m for m in node["models"] if m not in loaded]
    text = models_text(ordered, room)
    bold = {short_model(m) for m in loaded}
    parts: Parts = []
    for i, piece in enumerate(text.split(",")):
        name, _, rest = piece.partition(" ")
        parts += [(",", "")] if i else []
        parts.append((name, "bold" if name in bold else ""))
        if rest:
            parts.append((" " + rest, ""))
    return parts


def slots_of(node: dict[str, Any]) -> dict[str, int]:
    """Jobs running there and how many its loaded models can run at once (a hub too old to say: total 0)."""
    return node.get("slots") or {"used": node["active_jobs"], "total": 0}


def slots_parts(node: dict[str, Any]) -> Parts:
    """`used/total` slots (NUM_PARALLEL per loaded model); yellow when all are taken."""
    slots = slots_of(node)
    full = slots["total"] and slots["used"] >= slots["total"]
    return [(f"{slots['used']}/{slots['total']}", "yellow" if full else "")]


def vram_used(node: dict[str, Any]) -> tuple[int, int] | None:
    """Bytes of GPU memory its loaded models fill, and its total; None on a CPU node."""
    total = (node.get("capacity") or {}).get("vram_bytes")
    if not total:
        return None
    return sum(m.get("size_vram") or 0 for m in node.get("models_loaded") or []), total


def vram_parts(node: dict[str, Any]) -> Parts:
    """The share of its GPU memory loaded models fill (yellow from 70 %, red from 90 %); `cpu` without."""
    usage = vram_used(node)
    if not usage:
        return [("cpu", "bright_black")]
    share = min(1.0, usage[0] / usage[1])
    return [(f"{share * 100:.0f}%", "red" if share >= 0.9 else "yellow" if share >= 0.7 else "green")]


LEVELS = "▁▂▃▄▅▆▇█"  # no blank level: a flat series at zero still draws a flat line


def spark(values: list[float], width: int, top: float) -> str:
    """A one-line chart on a fixed scale from 0 to `top`; each character is the peak of its slice of time."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]) for i in range(width)
        ]
    top = top or 1.0
    return "".join(LEVELS[round(min(1.0, max(0.0, v / top)) * (len(LEVELS) - 1))] for v in values)


class History:
    """CPU, memory and active jobs per node, from the TUI's own polls."""

    def __init__(self, size: int = HISTORY) -> None:
        self.size = size
        self.series: dict[str, dict[str, deque[float]]] = {}

    def record(self, nodes: dict[str, dict[str, Any]]) -> None:
        for node_id, node in nodes.items():
            series = self.series.setdefault(
                node_id, {k: deque(maxlen=self.size) for k in ("cpu", "memory", "jobs")}
            )
            series["cpu"].append(node["load"]["cpu"])
            series["memory"].append(node["load"]["memory"])
            series["jobs"].append(float(node["active_jobs"]))
        for gone in self.series.keys() - nodes.keys():
            del self.series[gone]

    def of(self, node_id: str, name: str) -> list[float]:
        return list(self.series.get(node_id, {}).get(name, ()))
