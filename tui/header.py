"""ollama-top's header: the hub, whether it answers, and the fleet in one or two lines."""

from __future__ import annotations

from rich.markup import escape
from textual.widgets import Static

from ollama_connector.tui.client import FleetSnapshot
from ollama_connector.tui.render import count
from ollama_connector.tui.table import NodeTable


class FleetHeader(Static):
    """The hub, whether it answers, and the fleet in one or two lines."""

    shown = ""

    def show(self, text: str) -> None:
        # An update re-lays out the screen; at one poll a second, skip the ones that change nothing.
        if text != self.shown:
            self.shown = text
            self.update(text)


def header_text(
    hub_url: str,
    connected: bool | None,
    snapshot: FleetSnapshot | None,
    last_error: str,
    now: float,
    table: NodeTable,
) -> str:
    if connected is None:
        return f"[b]ollama-top[/b] {hub_url} · connecting…"
    if connected:
        state = "[b green]● connected[/]"
    else:
        since = f", data {now - snapshot.taken_at:.0f}s old" if snapshot else ""
        state = f"[b red]○ unreachable, retrying[/] ({escape(last_error)}{since})"
    lines = [f"[b]ollama-top[/b] {hub_url} {state} · sort: {table.sort_label}"]
    if table.filter_text:
        lines[0] += f" · filter [b]{escape(table.filter_text)}[/b]: {table.row_count} of {table.fleet_size}"
    if snapshot is not None:
        nodes, jobs = snapshot.stats["nodes"], snapshot.stats["jobs"]
        statuses = ", ".join(
            f"{nodes[s]} {s}" for s in ("online", "degraded", "offline", "draining") if nodes[s]
        )
        lines.append(
            f"{count(nodes['total'], 'node')} ({statuses or 'none'}) · {jobs['in_flight']} in flight · "
            f"{jobs['served']} served, {jobs['failed']} failed"
            + (
                f" · {jobs['jobs_per_second']:g} jobs/s, {jobs['tokens_per_second']:g} tok/s"
                if "jobs_per_second" in jobs
                else ""
            )
            + " · "
            f"{count(len(snapshot.models_online()), 'model')}"
            + (
                f" · [b]{waiting} waiting[/b]"
                if (waiting := snapshot.stats.get("queue", {}).get("waiting"))
                else ""
            )
            + (
                f" · [b yellow]{count(len(short), 'node')} below {expected} hubs[/]"
                if (short := (hubs := snapshot.stats.get("hubs") or {}).get("short"))
                and (expected := hubs.get("expected"))
                else ""
            )
        )
    return "\n".join(lines)
