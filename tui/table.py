"""The node table: a row per node, drawn line by line from cached rows so a refresh costs only what changed.

Textual's DataTable re-renders every visible cell through Rich whenever any cell changes; with a hundred
nodes something changes at every poll, and that was most of ollama-top's CPU. Here each row becomes a Strip
once, when its cells change, and a repaint reuses the cached strips.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

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


class NodeTable(ScrollView, can_focus=True):
    """Shows a FleetSnapshot's nodes, filtered and sorted, with a row cursor that stays on its node."""

    BINDINGS: ClassVar = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-1000000)", "First", show=False),
        Binding("end", "cursor(1000000)", "Last", show=False),
        Binding("enter", "select", "Details", show=False),
    ]
    COMPONENT_CLASSES: ClassVar = {"node-table--header", "node-table--cursor", "node-table--odd"}
    DEFAULT_CSS = """
    NodeTable { height: 1fr; background: $surface; }
    NodeTable > .node-table--header { text-style: bold; background: $panel; }
    NodeTable > .node-table--cursor { background: $accent 40%; }
    NodeTable:focus > .node-table--cursor { background: $accent; color: $text; }
    NodeTable > .node-table--odd { background: $surface-lighten-1; }
    """

    class RowSelected(Message):
        """Enter on a row."""

        def __init__(self, node_id: str) -> None:
            super().__init__()
            self.node_id = node_id

    cursor_row: reactive[int] = reactive(0, always_update=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wide = False
        self.sort_index = 0
        self.filter_text = ""
        self.order: list[str] = []  # node ids as shown, top to bottom
        self._fleet: dict[str, dict[str, Any]] = {}
        self._shown_at = 0.0
        self._cells: dict[str, dict[str, Parts]] = {}
        self._strips: dict[str, Strip] = {}  # each row drawn once, until its cells change
        self._lines: dict[tuple[str, str, int, int], Strip] = {}  # and styled for its place, once per place

    # What the app and the tests read.

    @property
    def sort_label(self) -> str:
        return SORTS[self.sort_index][0]

    @property
    def row_count(self) -> int:
        return len(self.order)

    @property
    def fleet_size(self) -> int:
        return len(self._fleet)

    @property
    def selected_node_id(self) -> str | None:
        return self.order[self.cursor_row] if 0 <= self.cursor_row < len(self.order) else None

    def columns(self) -> list[tuple[Column, int]]:
        shown = [c for c in COLUMNS if self.wide or not c.wide_only]
        return [(c, c.wide_width if self.wide and c.wide_width else c.width) for c in shown]

    # Changing what is shown.

    def set_width_class(self, terminal_width: int) -> None:
        wide = terminal_width >= WIDE_AT
        if wide != self.wide:
            self.wide = wide
            self._cells.clear()
            self._strips.clear()
            self._lines.clear()
            self.show(self._fleet, self._shown_at)
            self._size_to_rows()
            self.refresh()

    def _size_to_rows(self) -> None:
        self.virtual_size = Size(sum(w + 2 for _, w in self.columns()), len(self.order) + 1)

    def cycle_sort(self) -> str:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.show(self._fleet, self._shown_at)
        self.refresh_line(self.scroll_offset.y)  # the header's arrow moves even when no row does
        return self.sort_label

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.show(self._fleet, self._shown_at)

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self.order) - 1))

    def cells(self, node: dict[str, Any], now: float) -> dict[str, Parts]:
        models_room = next(width for column, width in self.columns() if column.key == "models")
        failures = str(node["failure_count"])
        return {
            "node": [(node["node_id"], "")],
            "status": [(node["status"], STATUS_STYLE.get(node["status"], ""))],
            "address": [(address(node), "")],
            "models": models_parts(node, models_room),
            "cpu": bar(node["load"]["cpu"]),
            "memory": bar(node["load"]["memory"]),
            "slots": slots_parts(node),
            "vram": vram_parts(node),
            "failures": [(failures, "red" if node["failure_count"] else "")],
            "seen": [(age(now - parse_time(node["last_seen"])), "")],
        }

    def show(self, nodes: dict[str, dict[str, Any]], now: float) -> None:
        """Show these nodes, filtered and sorted; redraw only changed rows; the cursor keeps its node."""
        keep = self.selected_node_id
        self._fleet, self._shown_at = nodes, now
        wanted = {node_id: node for node_id, node in nodes.items() if matches(node, self.filter_text)}
        for gone in self._cells.keys() - wanted.keys():
            del self._cells[gone]
            self._forget(gone)
        changed = []
        for node_id, node in wanted.items():
            cells = self.cells(node, now)
            if self._cells.get(node_id) != cells:
                self._cells[node_id] = cells
                self._forget(node_id)
                changed.append(node_id)
        order_key = SORTS[self.sort_index][1]
        order = sorted(wanted, key=lambda n: order_key(wanted[n], now))
        if order == self.order:  # the same rows in the same places: repaint only the rows that changed
            for node_id in changed:
                self.refresh_line(order.index(node_id) + 1)
            return
        self.order = order
        self._size_to_rows()
        self._lines.clear()  # rows moved: their stripes and cursor changed
        self.move_cursor(self.order.index(keep) if keep in self.order else self.cursor_row)
        self.refresh()

    def notify_style_update(self) -> None:
        # A theme or class change alters the colours baked into the cached lines.
        super().notify_style_update()
        self._lines.clear()

    def _forget(self, node_id: str) -> None:
        self._strips.pop(node_id, None)
        for key in [k for k in self._lines if k[0] == node_id]:
            del self._lines[key]

    # Drawing.

    def _row_strip(self, node_id: str) -> Strip:
        strip = self._strips.get(node_id)
        if strip is None:
            cells = self._cells[node_id]
            segments = []
            for column, width in self.columns():
                segments.append(Segment(" "))
                segments += [Segment(t, style_of(s)) for t, s in fit(cells[column.key], width, column.right)]
                segments.append(Segment(" "))
            strip = self._strips[node_id] = Strip(segments)
        return strip

    def _header_strip(self) -> Strip:
        segments = []
        for column, width in self.columns():
            label = column.label + (" ▼" if column.key == self.sort_label else "")
            segments += [
                Segment(" "),
                *[Segment(t) for t, _ in fit([(label, "")], width, column.right)],
                Segment(" "),
            ]
        return Strip(segments)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:  # the header stays put while the rows scroll
            style = self.get_component_rich_style("node-table--header")
            return (
                self._header_strip()
                .crop(scroll_x, scroll_x + width)
                .extend_cell_length(width)
                .apply_style(style)
            )
        index = y - 1 + scroll_y
        if index >= len(self.order):
            if index == 0 and self.filter_text and self._fleet:
                note = f" no node matches '{self.filter_text}' (Esc clears the filter)"
                return Strip([Segment(note, self.rich_style + Style(italic=True))]).extend_cell_length(width)
            return Strip.blank(width, self.rich_style)
        node_id = self.order[index]
        kind = "cursor" if index == self.cursor_row else "odd" if index % 2 else "even"
        key = (node_id, kind + ("-focus" if self.has_focus else ""), scroll_x, width)
        line = self._lines.get(key)
        if line is None:
            style = (
                self.rich_style if kind == "even" else self.get_component_rich_style(f"node-table--{kind}")
            )
            strip = self._row_strip(node_id).crop(scroll_x, scroll_x + width).extend_cell_length(width)
            if kind == "cursor":  # the cursor's colours replace the cells' own, so the row reads as one
                strip = Strip([Segment(segment.text) for segment in strip], width)
            line = self._lines[key] = strip.apply_style(style)
        return line

    # Moving around.

    def watch_cursor_row(self, row: int) -> None:
        # force: the scrollbars are sized after a layout pass; the cursor must be visible before that.
        visible = max(1, self.size.height - 1)
        if row < self.scroll_offset.y:
            self.scroll_to(y=row, animate=False, immediate=True, force=True)
        elif row >= self.scroll_offset.y + visible:
            self.scroll_to(y=row - visible + 1, animate=False, immediate=True, force=True)
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_select(self) -> None:
        if (node_id := self.selected_node_id) is not None:
            self.post_message(self.RowSelected(node_id))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(event.y - 1 + self.scroll_offset.y)
            if event.chain == 2:
                self.action_select()
