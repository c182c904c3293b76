"""The models view: each model in the fleet, the nodes that have it and have it loaded, its size; pull a
model onto chosen nodes (a progress bar per node) and delete one everywhere, after a confirmation."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, SelectionList, Static

from ollama_connector.tui.client import FleetSnapshot, HubClient, HubUnreachable
from ollama_connector.tui.render import short_model, size_text
from ollama_connector.tui.screens.fleet import Fleet, PollNow

COLUMNS = ("Model", "Size", "Nodes", "Loaded on", "Not online")


def fleet_models(snapshot: FleetSnapshot) -> dict[str, dict[str, list[str]]]:
    """Each model: the nodes that have it (online or not) and those that have it loaded."""
    models: dict[str, dict[str, list[str]]] = {}
    for node_id, node in sorted(snapshot.nodes.items()):
        loaded = {m["name"] for m in node.get("models_loaded") or []}
        for name in node["models"]:
            where = models.setdefault(name, {"nodes": [], "loaded": [], "away": []})
            where["nodes"].append(node_id)
            if name in loaded:
                where["loaded"].append(node_id)
            if node["status"] != "online":
                where["away"].append(node_id)
    return dict(sorted(models.items()))


class ModelsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q,m", "dismiss", "Back"),
        Binding("p", "pull", "Pull"),
        Binding("d", "delete", "Delete"),
    ]

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet
        self.sizes: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Static("models in the fleet", id="models-summary")
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.watch(self.fleet, "snapshot", self.show, init=True)
        self.load_sizes()

    @work(exclusive=True, group="sizes", exit_on_error=False)
    async def load_sizes(self) -> None:
        try:
            self.sizes = await self.fleet.client.model_sizes()
        except HubUnreachable:
            return
        self.show(self.fleet.snapshot)

    def show(self, snapshot: FleetSnapshot | None) -> None:
        if snapshot is None:
            return
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        models = fleet_models(snapshot)
        for name, where in models.items():
            table.add_row(
                short_model(name),
                size_text(self.sizes.get(name)),
                f"{len(where['nodes'])}: {', '.join(where['nodes'])}",
                Text(", ".join(where["loaded"]) or "-", style="bold green" if where["loaded"] else ""),
                Text(", ".join(where["away"]), style="yellow"),
                key=name,
            )
        if models:
            table.move_cursor(row=min(row, len(models) - 1))
        self.query_one("#models-summary", Static).update(
            f"[b]{len(models)} models[/b] on {len(snapshot.nodes)} nodes · p pulls one onto nodes, d deletes"
            " the selected one everywhere"
        )

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def action_pull(self) -> None:
        snapshot = self.fleet.snapshot
        online = sorted(
            n for n, node in (snapshot.nodes if snapshot else {}).items() if node["status"] == "online"
        )
        self.app.push_screen(PullScreen(self.fleet.client, online))

    def action_delete(self) -> None:
        if (model := self.selected()) is not None:
            self.app.push_screen(ConfirmDelete(self.fleet.client, model), self.deleted)

    def deleted(self, outcome: str | None) -> None:
        if outcome:
            self.query_one("#models-summary", Static).update(Text(outcome, style="red"))
        self.post_message(PollNow())
        self.load_sizes()


class ConfirmDelete(ModalScreen[str | None]):
    """y deletes the model on every node that has it; n or Esc does nothing."""

    BINDINGS = [Binding("y", "delete", "Yes, delete"), Binding("n,escape", "dismiss", "No")]

    def __init__(self, client: HubClient, model: str) -> None:
        super().__init__()
        self.client, self.model = client, model

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-panel"):
            yield Label(f"Delete [b]{self.model}[/b] from every node that has it? (y / n)", id="confirm-text")

    @work(exclusive=True, exit_on_error=False)
    async def action_delete(self) -> None:
        self.query_one("#confirm-text", Label).update(f"deleting {self.model}…")
        outcome = await self.client.delete(self.model)
        self.dismiss(f"delete {self.model}: {outcome}" if outcome else None)


class PullScreen(ModalScreen[None]):
    """A model name and the nodes to pull it onto; then a progress bar per node as the pull goes."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, client: HubClient, nodes: list[str]) -> None:
        super().__init__()
        self.client, self.nodes = client, nodes
        self.outcomes: dict[str, str] = {}
        self.rows: dict[str, int] = {}  # node id: its row's number in the widget ids

    def compose(self) -> ComposeResult:
        with Vertical(id="pull-panel"):
            yield Label(
                "Pull a model: type its name, pick nodes (space), Enter starts; Esc closes", id="pull-title"
            )
            yield Input(placeholder="model, e.g. qwen2.5:7b", id="pull-model")
            yield SelectionList[str](*((n, n, True) for n in self.nodes), id="pull-nodes")
            yield Vertical(id="pull-bars")
            yield Label("", id="pull-status")

    def on_mount(self) -> None:
        self.query_one("#pull-model", Input).focus()

    @on(Input.Submitted, "#pull-model")
    def start(self) -> None:
        model = self.query_one("#pull-model", Input).value.strip()
        chosen = list(self.query_one("#pull-nodes", SelectionList).selected)
        status = self.query_one("#pull-status", Label)
        if not model or not chosen:
            status.update(Text("name a model and pick at least one node", style="red"))
            return
        bars = self.query_one("#pull-bars", Vertical)
        bars.remove_children()
        # A widget id cannot hold a node id's dots (a host's FQDN, the default NODE_ID): rows go by number.
        self.rows = {node: n for n, node in enumerate(chosen)}
        for node, n in self.rows.items():
            bars.mount(
                Horizontal(
                    Label(f"{node:<16}", classes="pull-node"),
                    ProgressBar(total=100, show_eta=False, id=f"bar-{n}"),
                    Label("", id=f"state-{n}", classes="pull-state"),
                    classes="pull-row",
                )
            )
        status.update(f"pulling {model}…")
        self.pull(model, chosen)

    @work(exclusive=True, group="pull", exit_on_error=False)
    async def pull(self, model: str, nodes: list[str]) -> None:
        status = self.query_one("#pull-status", Label)
        async for line in self.client.pull(model, nodes):
            self.progress(line, status)

    def progress(self, line: dict[str, Any], status: Label) -> None:
        node = line.get("node_id")
        if node is None:  # the last line: the whole
            text = line.get("error") or "done on every node"
            status.update(Text(text, style="red" if "error" in line else "green"))
            return
        if (row := self.rows.get(node)) is None:
            return  # not a node this pull asked for
        bar = next(self.query(f"#bar-{row}").results(ProgressBar), None)
        state = self.query_one(f"#state-{row}", Label)
        if line.get("model") is not None and line.get("status") in ("success", "failed"):  # its end
            self.outcomes[node] = line["status"]
            if line["status"] == "success" and bar is not None:
                bar.update(progress=100)
            state.update(
                Text(
                    line["status"] if line["status"] == "success" else f"failed: {line.get('reason')}",
                    style="green" if line["status"] == "success" else "red",
                )
            )
            return
        if bar is not None and line.get("total"):
            bar.update(progress=100 * line.get("completed", 0) / line["total"])
        state.update(str(line.get("status", "")))
