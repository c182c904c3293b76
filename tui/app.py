"""`ollama-top`: the fleet at a glance, polling the hub."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.markup import escape
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerState

from ollama_connector.tui.client import FleetSnapshot, HubClient, HubUnreachable
from ollama_connector.tui.header import FleetHeader, header_text
from ollama_connector.tui.render import History
from ollama_connector.tui.screens.details import DetailsScreen
from ollama_connector.tui.screens.fleet import PollNow, ProblemReported
from ollama_connector.tui.screens.help import HelpScreen
from ollama_connector.tui.screens.jobs import JobsScreen
from ollama_connector.tui.screens.models import ModelsScreen
from ollama_connector.tui.screens.prompt import PromptScreen
from ollama_connector.tui.table import NodeTable

NODE_TABLE_ACTIONS = {"sort", "filter", "prompt", "jobs", "models", "poll_now"}


class OllamaTop(App[None]):
    CSS_PATH = "ollama_top.tcss"
    TITLE = "ollama-top"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("p", "prompt", "Prompt"),
        Binding("J", "jobs", "Jobs"),  # j moves down, as in vi
        Binding("m", "models", "Models"),
        Binding("r", "poll_now", "Refresh"),
        Binding("question_mark", "help", "Keys"),
    ]

    snapshot: reactive[FleetSnapshot | None] = reactive(None, always_update=True)
    connected: reactive[bool | None] = reactive(None)

    def __init__(
        self,
        hub_url: str,
        interval: float = 2.0,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.hub_url = hub_url
        self.interval = interval
        self.client = HubClient(hub_url, api_key)
        self.history = History()
        self.clock = clock
        self.last_error = ""
        self.problem = ""  # an unexpected error, shown in the header until the next good poll
        self.polls = 0
        self.poll_timer: Timer | None = None  # the one pending poll; re-armed only when a poll ends

    def compose(self) -> ComposeResult:
        yield FleetHeader(id="header")
        yield NodeTable(id="nodes")
        yield Input(placeholder="filter: node, status, address or model", id="filter", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(NodeTable).set_width_class(self.size.width)
        self.render_header()
        self.poll()

    async def on_unmount(self) -> None:
        await self.client.close()

    def on_resize(self, event: events.Resize) -> None:
        # The event's size, not self.size: the app's own is updated only after its handlers have run.
        self.query_one(NodeTable).set_width_class(event.size.width)

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll(self) -> None:
        """One poll at a time: the next is armed when this one ends, and not when it is cancelled."""
        try:
            snapshot = await self.client.fetch()
        except HubUnreachable as exc:
            self.last_error = str(exc)
            self.connected = False
        else:
            self.history.record(snapshot.nodes)
            self.connected = True
            self.problem = ""
            self.snapshot = snapshot
        self.polls += 1
        self.render_header()
        self.arm_next_poll()

    def arm_next_poll(self) -> None:
        if self.poll_timer is not None:
            self.poll_timer.stop()
        self.poll_timer = self.set_timer(self.interval, self.poll, name="next-poll")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if not self.query(FleetHeader):
            return  # the app is closing: a poll cut short by it is nothing to report
        if event.state is WorkerState.ERROR:
            self.report(f"{event.worker.name} failed: {event.worker.error!r}")
            if event.worker.group == "poll":
                self.arm_next_poll()  # a poll that crashed must not stop the polling

    @on(ProblemReported)
    def problem_reported(self, event: ProblemReported) -> None:
        self.report(event.text)

    @on(PollNow)
    def poll_asked(self) -> None:
        self.action_poll_now()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The node table's keys act only on the node table: each view over it binds its own (a `/` typed
        in the jobs view must not land in the hidden node filter)."""
        return not (action in NODE_TABLE_ACTIONS and len(self.screen_stack) > 1)

    def report(self, text: str) -> None:
        self.problem = text
        self.render_header()

    def watch_snapshot(self, snapshot: FleetSnapshot | None) -> None:
        if snapshot is not None:
            self.query_one(NodeTable).show(snapshot.nodes, self.clock())

    def watch_connected(self, connected: bool | None) -> None:
        self.query_one("#header").set_class(connected is False, "stale")
        self.query_one(NodeTable).set_class(connected is False, "stale")

    def render_header(self) -> None:
        table = self.query_one(NodeTable)
        self.query_one(FleetHeader).show(
            header_text(
                self.client.base_url, self.connected, self.snapshot, self.last_error, self.clock(), table
            )
            + (f"\n[b red]{escape(self.problem)}[/]" if self.problem and self.connected is not None else "")
        )

    def action_sort(self) -> None:
        self.query_one(NodeTable).cycle_sort()
        self.render_header()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.disabled = False
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.query_one(NodeTable).set_filter(event.value)
        self.render_header()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.leave_filter()

    def leave_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.remove_class("visible")
            box.disabled = True  # a hidden box must not take the focus back
        self.query_one(NodeTable).focus()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and (self.focused is box or box.value):
            event.stop()  # Esc clears the filter, from the box or from the table
            box.value = ""
            self.leave_filter()

    @on(NodeTable.RowSelected)
    def open_details(self, event: NodeTable.RowSelected) -> None:
        self.push_screen(DetailsScreen(event.node_id, self))

    def action_prompt(self) -> None:
        models = self.snapshot.models_that_generate() if self.snapshot else []
        self.push_screen(PromptScreen(models, self.client))

    def action_models(self) -> None:
        self.push_screen(ModelsScreen(self))

    def action_jobs(self) -> None:
        self.push_screen(JobsScreen(self))

    def action_poll_now(self) -> None:
        """Poll now; the pending timer goes, and the poll arms the next one when it ends."""
        if self.poll_timer is not None:
            self.poll_timer.stop()
            self.poll_timer = None
        self.poll()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
