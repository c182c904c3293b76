"""The jobs view: the hub's recent jobs (GET /jobs), their node, duration, speed and errors, newest first."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ollama_connector.shared.wire import short_job_id
from ollama_connector.tui.client import HubUnreachable
from ollama_connector.tui.render import age, parse_time, short_model
from ollama_connector.tui.screens.fleet import Fleet

SHOWN = 200  # jobs listed
JOB_STYLE = {
    "done": "green",
    "running": "bold cyan",
    "queued": "cyan",
    "failed": "bold red",
    "rejected": "yellow",
    "cancelled": "bright_black",
    "interrupted": "red",
}
COLUMNS = (
    "Job",
    "Status",
    "Model",
    "Node",
    "Route",
    "Age",
    "Duration",
    "TTFT",
    "Tok/s",
    "Tokens",
    "Error",
    "Key",
)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s" if value < 100 else age(value)


def job_row(job: dict[str, Any], now: float) -> tuple[Any, ...]:
    tried = job["nodes_tried"]
    node = job["node"] or (f"{tried[-1]}…" if tried else "-")
    if len(tried) > 1:
        node += f" ({len(tried)} tried)"
    tokens = job["output_tokens"]
    return (
        short_job_id(job["job_id"]) + (" ⧗" if job["kind"] == "async" else ""),
        Text(job["status"], style=JOB_STYLE.get(job["status"], "")),
        short_model(job["model"]),
        node,
        job["route"],
        age(now - parse_time(job["arrived_at"])),
        seconds(job["duration_seconds"]),
        seconds(job["time_to_first_token_seconds"]),
        "-" if job["tokens_per_second"] is None else f"{job['tokens_per_second']:.0f}",
        "-" if tokens is None else str(tokens),
        Text((job["error"] or "")[:120], style="red"),
        job.get("key") or "-",
    )


def usage_line(jobs: list[dict[str, Any]]) -> str:
    """The listed jobs' tokens (prompt and output) by key, most first: who used what, at a glance."""
    used: dict[str, int] = {}
    for job in jobs:
        if job.get("key"):
            tokens = (job["prompt_tokens"] or 0) + (job["output_tokens"] or 0)
            used[job["key"]] = used.get(job["key"], 0) + tokens
    ranked = sorted(used.items(), key=lambda item: -item[1])
    return " · ".join(f"{key} {tokens:,} tokens" for key, tokens in ranked)


class JobsScreen(Screen[None]):
    """Recent jobs, refreshed at the app's poll interval; `⧗` marks async jobs."""

    BINDINGS = [Binding("escape,q,J", "dismiss", "Back"), Binding("r", "refresh", "Refresh")]

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet

    def compose(self) -> ComposeResult:
        yield Static("recent jobs: loading…", id="jobs-summary")
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.refresh_jobs()
        self.set_interval(self.fleet.interval, self.refresh_jobs)

    def action_refresh(self) -> None:
        self.refresh_jobs()

    @work(exclusive=True, group="jobs", exit_on_error=False)
    async def refresh_jobs(self) -> None:
        summary = self.query_one("#jobs-summary", Static)
        try:
            listing = await self.fleet.client.recent_jobs(SHOWN)
        except HubUnreachable as exc:
            summary.update(Text(f"recent jobs: {exc}", style="red"))
            return
        jobs, now = listing["jobs"], self.fleet.clock()
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for job in jobs:
            table.add_row(*job_row(job, now), key=job["job_id"])
        if jobs:
            table.move_cursor(row=min(row, len(jobs) - 1))
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
        counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        journal = listing.get("journal", "ok")
        note = "" if journal == "ok" else f" · [red]journal: {journal}[/]"
        by_key = f"\n[b]by key[/b]: {escape(line)}" if (line := usage_line(jobs)) else ""
        summary.update(f"[b]recent jobs[/b]: the last {len(jobs)} ({counts or 'none yet'}){note}{by_key}")
