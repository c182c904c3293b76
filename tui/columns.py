"""The node table's columns: what each shows of a node, the sort orders, the filter, and how a row's cells
are cut to their widths and turned into segments (tui.table draws them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rich.segment import Segment
from rich.style import Style

from ollama_connector.tui.render import (
    STATUS_RANK,
    STATUS_STYLE,
    Parts,
    address,
    age,
    bar,
    models_parts,
    parse_time,
    slots_parts,
    vram_parts,
)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    wide_only: bool = False
    wide_width: int | None = None  # a larger width when the terminal is wide
    right: bool = False  # numbers line up on the right


COLUMNS = [
    Column("node", "Node", 12),
    Column("status", "Status", 8),
    Column("address", "Address", 18, wide_only=True),
    Column("models", "Models", 13, wide_width=24),
    Column("cpu", "CPU", 9),
    Column("memory", "Mem", 9),
    Column("slots", "Slots", 5, right=True),
    Column("vram", "VRAM", 4, wide_only=True, right=True),
    Column("cache", "Hit", 4, wide_only=True, right=True),  # of prompt tokens, from the node's prompt cache
    Column("failures", "Fail", 4, right=True),
    Column("seen", "Seen", 4, right=True),
]
WIDE_AT = 110  # terminal columns from which the address column and longer model lists fit

# Sort orders `s` cycles through: (label, key function, most interesting first).
SORTS: list[tuple[str, Any]] = [
    ("node", lambda n, now: n["node_id"]),
    ("status", lambda n, now: (STATUS_RANK.get(n["status"], 9), n["node_id"])),
    ("cpu", lambda n, now: (-n["load"]["cpu"], n["node_id"])),
    ("memory", lambda n, now: (-n["load"]["memory"], n["node_id"])),
    ("slots", lambda n, now: (-n["active_jobs"], n["node_id"])),
    ("failures", lambda n, now: (-n["failure_count"], n["node_id"])),
    ("seen", lambda n, now: (parse_time(n["last_seen"]), n["node_id"])),
]


def matches(node: dict[str, Any], needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join([node["node_id"], node["status"], address(node), *node["models"]]).lower()
    return needle.lower() in haystack


@lru_cache(maxsize=256)
def style_of(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


def fit(parts: Parts, width: int, right: bool) -> list[tuple[str, str]]:
    """Cut or pad a cell's runs to exactly `width` characters."""
    length = sum(len(text) for text, _ in parts)
    if length > width:
        out, room = [], width - 1
        for text, style in parts:
            out.append((text[:room], style))
            room -= len(out[-1][0])
            if room <= 0:
                break
        return [*out, ("…", "")]
    pad = (" " * (width - length), "")
    return [pad, *parts] if right else [*parts, pad]


def shown_columns(wide: bool) -> list[tuple[Column, int]]:
    """The columns a terminal of that width shows, each with its width."""
    shown = [c for c in COLUMNS if wide or not c.wide_only]
    return [(c, c.wide_width if wide and c.wide_width else c.width) for c in shown]


def models_room(columns: list[tuple[Column, int]]) -> int:
    return next(width for column, width in columns if column.key == "models")


def cells_of(node: dict[str, Any], now: float, models_room: int) -> dict[str, Parts]:
    """A node's row, cell by cell: each a list of (text, style) runs."""
    failures = str(node["failure_count"])
    return {
        "node": [(node["node_id"], "")],
        "status": [(node["status"], STATUS_STYLE.get(node["status"], ""))]
        + ([("!", "b yellow")] if (node.get("hubs") or {}).get("short") else []),  # below EXPECTED_HUBS
        "address": [(address(node), "")],
        "models": models_parts(node, models_room),
        "cpu": bar(node["load"]["cpu"]),
        "memory": bar(node["load"]["memory"]),
        "slots": slots_parts(node),
        "vram": vram_parts(node),
        "cache": cache_parts(node),
        "failures": [(failures, "red" if node["failure_count"] else "")],
        "seen": [(age(now - parse_time(node["last_seen"])), "")],
    }


def cache_parts(node: dict[str, Any]) -> Parts:
    rate = (node.get("prompt_cache") or {}).get("hit_rate")  # a hub older than prompt routing has none
    return [(f"{rate:.0%}", "") if isinstance(rate, int | float) else ("-", "dim")]


def row_segments(cells: dict[str, Parts], columns: list[tuple[Column, int]]) -> list[Segment]:
    segments = []
    for column, width in columns:
        segments.append(Segment(" "))
        segments += [Segment(t, style_of(s)) for t, s in fit(cells[column.key], width, column.right)]
        segments.append(Segment(" "))
    return segments


def header_segments(columns: list[tuple[Column, int]], sorted_by: str) -> list[Segment]:
    segments = []
    for column, width in columns:
        label = column.label + (" ▼" if column.key == sorted_by else "")
        cut = fit([(label, "")], width, column.right)
        segments += [Segment(" "), *[Segment(t) for t, _ in cut], Segment(" ")]
    return segments
