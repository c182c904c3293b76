"""The node table: a row per node, keyed by node_id and updated cell by cell so the cursor survives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from tui.render import STATUS_RANK, address, age, bar, models_text, parse_time, status_text


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    wide_only: bool = False
    wide_width: int | None = None  # a larger width when the terminal is wide


COLUMNS = [
    Column("node", "Node", 12),
    Column("status", "Status", 8),
    Column("address", "Address", 18, wide_only=True),
    Column("models", "Models", 8, wide_width=28),
    Column("cpu", "CPU", 9),
    Column("memory", "Mem", 9),
    Column("jobs", "Jobs", 4),
    Column("failures", "Fail", 4),
    Column("seen", "Seen", 4),
]
WIDE_AT = 110  # terminal columns from which the address column and longer model lists fit

# Sort orders `s` cycles through: (label, key function, most interesting first).
SORTS: list[tuple[str, Any]] = [
    ("node", lambda n, now: n["node_id"]),
    ("status", lambda n, now: (STATUS_RANK.get(n["status"], 9), n["node_id"])),
    ("cpu", lambda n, now: (-n["load"]["cpu"], n["node_id"])),
    ("memory", lambda n, now: (-n["load"]["memory"], n["node_id"])),
    ("jobs", lambda n, now: (-n["active_jobs"], n["node_id"])),
    ("failures", lambda n, now: (-n["failure_count"], n["node_id"])),
    ("seen", lambda n, now: (parse_time(n["last_seen"]), n["node_id"])),
]


def matches(node: dict[str, Any], needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join([node["node_id"], node["status"], address(node), *node["models"]]).lower()
    return needle.lower() in haystack


class NodeTable(DataTable):
    """Shows a FleetSnapshot's nodes, filtered and sorted."""

    DEFAULT_CSS = "NodeTable { height: 1fr; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.wide = False
        self.sort_index = 0
        self.filter_text = ""
        self._fleet: dict[str, dict[str, Any]] = {}
        self._shown_at = 0.0
        self._row_cells: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []

    @property
    def sort_label(self) -> str:
        return SORTS[self.sort_index][0]

    def on_mount(self) -> None:
        self._build_columns()

    def _columns(self) -> list[Column]:
        return [c for c in COLUMNS if self.wide or not c.wide_only]

    def _build_columns(self) -> None:
        for column in self._columns():
            label = column.label + (" ▼" if column.key == self.sort_label else "")
            width = column.wide_width if self.wide and column.wide_width else column.width
            self.add_column(label, key=column.key, width=width)

    def set_width_class(self, terminal_width: int) -> None:
        wide = terminal_width >= WIDE_AT
        if wide != self.wide or not self.columns:
            self.wide = wide
            self._rebuild()

    def cycle_sort(self) -> str:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._rebuild()
        return self.sort_label

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.show(self._fleet, self._shown_at)

    def _rebuild(self) -> None:
        selected = self.selected_node_id
        self.clear(columns=True)
        self._row_cells.clear()
        self._order = []
        self._build_columns()
        self.show(self._fleet, self._shown_at, keep=selected)

    @property
    def selected_node_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    def cells(self, node: dict[str, Any], now: float) -> dict[str, Any]:
        models_room = 28 if self.wide else 8
        values = {
            "node": node["node_id"],
            "status": status_text(node["status"]),
            "address": address(node),
            "models": models_text(node["models"], models_room),
            "cpu": bar(node["load"]["cpu"]),
            "memory": bar(node["load"]["memory"]),
            "jobs": Text(str(node["active_jobs"]), justify="right"),
            "failures": Text(
                str(node["failure_count"]), justify="right", style="red" if node["failure_count"] else ""
            ),
            "seen": age(now - parse_time(node["last_seen"])),
        }
        return {c.key: values[c.key] for c in self._columns()}

    def show(self, nodes: dict[str, dict[str, Any]], now: float, keep: str | None = None) -> None:
        """Make the rows match `nodes` (add, update changed cells, remove), order them, keep the cursor."""
        keep = keep or self.selected_node_id
        self._fleet, self._shown_at = nodes, now
        wanted = {node_id: node for node_id, node in nodes.items() if matches(node, self.filter_text)}
        for gone in self._row_cells.keys() - wanted.keys():
            self.remove_row(gone)
            del self._row_cells[gone]
        for node_id, node in wanted.items():
            cells = self.cells(node, now)
            old = self._row_cells.get(node_id)
            if old is None:
                self.add_row(*cells.values(), key=node_id)
                self._order = []  # a new row lands at the end: the table must be sorted again
            else:
                for key, value in cells.items():
                    if old.get(key) != value:
                        self.update_cell(node_id, key, value)
            self._row_cells[node_id] = cells
        order_key = SORTS[self.sort_index][1]
        order = sorted(wanted, key=lambda n: order_key(wanted[n], now))
        if order != self._order:  # sorting redraws the whole table: only when the order really changed
            rank = {n: i for i, n in enumerate(order)}
            self.sort("node", key=lambda node_cell: rank[str(node_cell)])
            self._order = order
        if keep in wanted:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
