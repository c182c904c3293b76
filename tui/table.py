"""The node table: a row per node, drawn line by line from cached rows so a refresh costs only what changed.

Textual's DataTable re-renders every visible cell through Rich whenever any cell changes; with a hundred
nodes something changes at every poll, and that was most of ollama-top's CPU. Here each row becomes a Strip
once, when its cells change, and a repaint reuses the cached strips.
"""

from __future__ import annotations

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

from ollama_connector.tui.columns import (
    SORTS,
    WIDE_AT,
    Column,
    cells_of,
    header_segments,
    matches,
    models_room,
    row_segments,
    shown_columns,
)
from ollama_connector.tui.render import (
    Parts,
)


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
        return shown_columns(self.wide)

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
            cells = cells_of(node, now, models_room(self.columns()))
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
            strip = self._strips[node_id] = Strip(row_segments(self._cells[node_id], self.columns()))
        return strip

    def _header_strip(self) -> Strip:
        return Strip(header_segments(self.columns(), self.sort_label))

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
