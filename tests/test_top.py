"""ollama-top driven with Textual's Pilot against a real hub on a loopback port."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, SelectionList, Static

from ollama_connector.shared.wire import Heartbeat, Load
from ollama_connector.tui.app import OllamaTop
from ollama_connector.tui.screens.details import DetailsScreen
from ollama_connector.tui.screens.help import HelpScreen
from ollama_connector.tui.screens.jobs import JobsScreen
from ollama_connector.tui.screens.models import ConfirmDelete, ModelsScreen, PullScreen
from ollama_connector.tui.screens.prompt import PromptScreen
from ollama_connector.tui.table import NodeTable
from tests.conftest import free_port, wait_until


async def beat(
    http, hub, node_id: str, cpu: float = 0.1, jobs_models=("llama3:latest",), status="online"
) -> None:
    body = Heartbeat(
        node_id=node_id, port=9, models=list(jobs_models), load=Load(cpu=cpu, memory=0.3), status=status
    )
    async with http.post(hub.url + "/nodes/heartbeat", json=body.model_dump()) as r:
        assert r.status == 200


def row_ids(table: NodeTable) -> list[str]:
    return list(table.order)


async def test_rows_refresh_sort_filter_and_details(fleet, http):
    hub = await fleet.hub()
    for node_id, cpu in (("alpha", 0.2), ("bravo", 0.9), ("charlie", 0.5)):
        await beat(http, hub, node_id, cpu=cpu)
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(NodeTable)
        await wait_until(lambda: table.row_count == 3, what="three rows")
        assert row_ids(table) == ["alpha", "bravo", "charlie"]

        # The cursor stays on its node through refreshes, and through a new node sorting before it.
        await pilot.press("down")
        assert table.selected_node_id == "bravo"
        polls = app.polls
        await beat(http, hub, "aardvark", cpu=0.1)
        await wait_until(lambda: table.row_count == 4 and app.polls > polls + 1, what="the new node")
        assert row_ids(table)[0] == "aardvark" and table.selected_node_id == "bravo"

        await pilot.press("s")  # node -> status
        await pilot.press("s")  # status -> cpu, busiest first
        assert table.sort_label == "cpu" and row_ids(table) == ["bravo", "charlie", "alpha", "aardvark"]
        assert table.selected_node_id == "bravo"

        await pilot.press("slash", "c", "h")
        assert row_ids(table) == ["charlie"]
        await pilot.press("enter")  # leaves the filter box, the filter stays
        assert row_ids(table) == ["charlie"] and app.focused is table
        await pilot.press("slash", "backspace", "backspace", "escape")
        assert table.row_count == 4 and not app.query_one("#filter", Input).display

        table.move_cursor(row=row_ids(table).index("alpha"))
        await pilot.press("enter")
        assert isinstance(app.screen, DetailsScreen) and app.screen.node_id == "alpha"
        fields = str(app.screen.query_one("#fields", Static).content)
        assert "alpha" in fields and "online" in fields
        await pilot.press("escape")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]


async def test_prompt_streams_tokens_from_a_simulator(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=200, default_tokens=12)
    await fleet.node(hub, sim, "n1")
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.snapshot is not None, what="the first poll")
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, PromptScreen)
        assert screen.query_one("#model", Select).value == "llama3:latest"
        await pilot.press(*"why", "enter")
        status = screen.query_one("#prompt-status", Label)
        await wait_until(lambda: "done" in str(status.content), what="the answer to finish")
        assert str(screen.query_one("#answer", Static).content).startswith("The sky looks blue")
        assert "node n1 · 12 tokens" in str(status.content) and "tok/s" in str(status.content)

        # A failing fleet: the hub's 503 is shown as the hub sent it.
        sim.behaviour.update({"fail_rate": 1.0})
        await pilot.press("enter")
        await wait_until(lambda: "error" in str(status.content), what="the error")
        assert "HTTP 503" in str(status.content) and "All candidate nodes failed" in str(status.content)


async def test_escape_cancels_a_running_prompt(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim(tokens_per_second=20, default_tokens=500)
    await fleet.node(hub, sim, "n1")
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.snapshot is not None, what="the first poll")
        await pilot.press("p", "x", "enter")
        await wait_until(lambda: sim.stats.in_flight == 1, what="the prompt to start")
        await pilot.press("escape")
        await wait_until(lambda: sim.stats.cancelled == 1, what="the simulator to see the cancellation")
        assert "cancelled" in str(app.screen.query_one("#prompt-status", Label).content)
        await pilot.press("escape")
        assert not isinstance(app.screen, PromptScreen)


async def test_a_dead_hub_shows_stale_data_then_recovers(fleet, http):
    hub = await fleet.hub()
    await beat(http, hub, "alpha")
    port = hub.port
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(80, 24)):
        table = app.query_one(NodeTable)
        await wait_until(lambda: table.row_count == 1, what="the first row")
        await hub.stop()
        await wait_until(lambda: app.connected is False, what="the hub to be seen gone")
        header = str(app.query_one("#header", Static).content)
        assert "unreachable, retrying" in header and table.has_class("stale") and table.row_count == 1

        again = await fleet.hub(HUB_PORT=str(port))
        await beat(http, again, "alpha")
        await wait_until(lambda: app.connected is True, what="reconnection")
        assert not table.has_class("stale") and "connected" in str(app.query_one("#header", Static).content)


async def test_with_two_hubs_it_follows_whichever_answers(fleet, http):
    first, second = await fleet.hub(), await fleet.hub()
    for hub in (first, second):
        await beat(http, hub, "alpha")
    app = OllamaTop(f"{first.url},{second.url}", interval=0.2)
    async with app.run_test(size=(80, 24)):
        table = app.query_one(NodeTable)
        await wait_until(lambda: table.row_count == 1, what="the first row")
        assert first.url in str(app.query_one("#header", Static).content)
        await first.stop()  # the hub it watched goes: the next poll finds the other, with no stale screen
        await wait_until(lambda: app.client.base_url == second.url, what="the other hub")
        await wait_until(lambda: second.url in str(app.query_one("#header", Static).content), what="a redraw")
        assert app.connected is True and not table.has_class("stale") and table.row_count == 1


def test_config_precedence(tmp_path):
    from ollama_connector.tui.config import parser, resolve

    file = tmp_path / "ollama-top.toml"
    file.write_text('hub = "http://from-file:8000"\ninterval = 5\n')
    assert resolve(parser().parse_args([]), {}, file).hub_url == "http://from-file:8000"
    env = {"OLLAMA_HUB_URL": "http://from-env:8000", "OLLAMA_HUB_API_KEY": "k"}
    from_env = resolve(parser().parse_args([]), env, file)
    assert (from_env.hub_url, from_env.interval, from_env.api_key) == ("http://from-env:8000", 5.0, "k")
    cli = resolve(parser().parse_args(["--hub", "hub.lan:9000", "--interval", "1"]), env, file)
    assert (cli.hub_url, cli.interval) == ("http://hub.lan:9000", 1.0)
    assert json.dumps(resolve(parser().parse_args([]), {}, tmp_path / "none.toml").__dict__)
    two = resolve(parser().parse_args(["--hub", "hub1.lan:8000, https://hub2.lan:8000/"]), {}, file)
    assert two.hub_url == "http://hub1.lan:8000,https://hub2.lan:8000"


async def test_api_key_is_sent_to_the_hub(fleet, http):
    hub = await fleet.hub(API_KEYS="top-key-0123456789")
    await beat(http, hub, "alpha")
    refused = OllamaTop(hub.url, interval=0.2)
    async with refused.run_test(size=(80, 24)):
        await wait_until(lambda: refused.connected is False, what="the refusal")
        assert "API key" in str(refused.query_one("#header", Static).content)
    app = OllamaTop(hub.url, interval=0.2, api_key="top-key-0123456789")
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: app.query_one(NodeTable).row_count == 1, what="the row")


async def test_the_cursor_scrolls_the_table_and_enter_opens_the_row_under_it(fleet, http):
    hub = await fleet.hub()
    for i in range(60):
        await beat(http, hub, f"node-{i:02d}")
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(NodeTable)
        await wait_until(lambda: table.row_count == 60, what="sixty rows")
        await pilot.press("end")
        assert table.selected_node_id == "node-59" and table.scroll_offset.y > 0
        await pilot.press("pageup", "up")
        selected = table.selected_node_id
        assert selected not in (None, "node-59")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailsScreen) and app.screen.node_id == selected
        await pilot.press("escape", "home")
        assert table.selected_node_id == "node-00" and table.scroll_offset.y == 0


def live_poll_timers(app: OllamaTop) -> list:
    return [t for t in app._timers if t.name == "next-poll" and t._task is not None and not t._task.done()]


async def test_r_polls_now_without_adding_a_poll_loop(fleet, http):
    hub = await fleet.hub()
    await beat(http, hub, "alpha")
    app = OllamaTop(
        hub.url, interval=60
    )  # no timer fires during the test: every poll is the initial one or r
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.polls == 1, what="the first poll")
        for presses in range(1, 6):
            await pilot.press("r")
            await wait_until(lambda p=presses: app.polls == 1 + p, what=f"poll {1 + presses}")
        await pilot.pause()
        assert len(live_poll_timers(app)) == 1


@pytest.mark.parametrize(
    ("field", "typed"), [("temperature", "-"), ("temperature", "."), ("num_predict", "1e")]
)
async def test_a_bad_prompt_option_is_named_instead_of_crashing(fleet, http, field, typed):
    hub = await fleet.hub()
    sim = await fleet.sim()
    await fleet.node(hub, sim, "n1")
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.snapshot is not None, what="the first poll")
        await pilot.press("p", *"why")
        screen = app.screen
        screen.query_one(f"#{field}", Input).value = typed
        await pilot.press("enter")
        status = str(screen.query_one("#prompt-status", Label).content)
        assert f"{field}[/red]: Must be a valid" in status and app.is_running and sim.stats.requests == 0
        screen.query_one(f"#{field}", Input).value = "1"
        await pilot.press("enter")
        await wait_until(
            lambda: "done" in str(screen.query_one("#prompt-status", Label).content), what="done"
        )


async def test_an_unexpected_worker_error_shows_in_the_header(fleet, http):
    hub = await fleet.hub()
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(100, 30)):
        await wait_until(lambda: app.polls == 1, what="the first poll")

        async def fails() -> None:
            raise RuntimeError("something nobody expected")

        app.run_worker(fails(), name="probe", exit_on_error=False)
        header = app.query_one("#header", Static)
        await wait_until(lambda: "something nobody expected" in str(header.content), what="the error shown")
        assert app.is_running


async def test_the_help_screen_is_wide_enough_to_read(fleet):
    hub = await fleet.hub()
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        panel = app.screen.query_one("#help-panel")
        assert panel.size.width >= 60 and panel.size.height >= len(HelpScreen.KEYS)


async def test_a_resize_changes_the_layout_at_once(fleet, http):
    hub = await fleet.hub()
    await beat(http, hub, "alpha")
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(NodeTable)
        await wait_until(lambda: table.row_count == 1, what="the row")
        assert table.wide
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not table.wide and sum(width + 2 for _, width in table.columns()) <= 80
        await pilot.resize_terminal(120, 30)
        await pilot.pause()
        assert table.wide


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        ([], {"OLLAMA_TOP_INTERVAL": "abc"}, "OLLAMA_TOP_INTERVAL='abc' is not a number of seconds"),
        (["--interval", "0"], {}, "--interval='0': polls must be at least 0.2 seconds apart"),
        (["--interval", "nan"], {}, "--interval='nan': polls must be at least 0.2 seconds apart"),
    ],
)
def test_a_bad_interval_is_one_line_naming_where_it_came_from(tmp_path, argv, env, says):
    from ollama_connector.tui.config import parser, resolve

    with pytest.raises(SystemExit) as exit_:
        resolve(parser().parse_args(argv), env, tmp_path / "none.toml")
    assert str(exit_.value) == f"ollama-top: {says}"


async def test_connection_errors_are_said_plainly(fleet):
    sim = await fleet.sim()
    for url, says in (
        (sim.url, "this is an Ollama server (0.33.0), not a hub"),
        (f"http://127.0.0.1:{free_port()}", "connection refused by 127.0.0.1:"),
    ):
        app = OllamaTop(url, interval=60)
        async with app.run_test(size=(100, 30)):
            await wait_until(lambda a=app: a.connected is False, what="the poll to fail")
            assert says in str(app.query_one("#header", Static).content)


async def test_filter_shows_in_the_header_says_when_nothing_matches_and_esc_clears_it(fleet, http):
    hub = await fleet.hub()
    for node_id in ("alpha", "bravo", "charlie"):
        await beat(http, hub, node_id)
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(100, 24)) as pilot:
        table, header = app.query_one(NodeTable), app.query_one("#header", Static)
        await wait_until(lambda: table.row_count == 3, what="three rows")
        await pilot.press("j", "j", "k")  # j and k move like the arrows
        assert table.selected_node_id == "bravo"
        await pilot.press("slash", "a", "l", "enter")
        assert row_ids(table) == ["alpha"] and "filter [b]al[/b]: 1 of 3" in str(header.content)
        await pilot.press("slash", "z")
        assert table.row_count == 0
        assert "no node matches 'z'" in table.render_line(1).text  # / selects the old text: z replaces it
        await pilot.press("enter")  # back on the table, the filter kept
        assert app.focused is table and table.row_count == 0
        await pilot.press("escape")  # Esc on the table clears it too
        assert table.row_count == 3 and "filter" not in str(header.content)
        assert not app.query_one("#filter", Input).display


async def test_the_prompt_panel_offers_only_models_that_generate(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")  # llama3, mistral:7b and nomic-embed-text
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: app.snapshot is not None, what="the first poll")
        await pilot.press("p")
        assert app.screen.models == ["llama3:latest", "mistral:7b"]


async def test_details_show_metadata_as_aligned_fields_and_a_flat_chart_as_a_line(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    app = OllamaTop(hub.url, interval=60)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(lambda: app.query_one(NodeTable).row_count == 1, what="the row")
        await pilot.press("enter")
        await pilot.pause()
        metadata = app.screen.query_one("#metadata", Static).content.plain.splitlines()
        rows = dict(line.split(None, 1) for line in metadata[1:])
        assert metadata[0] == "Metadata:" and rows["ollama_version"] == "0.33.0" and "cpu_count" in rows
        assert rows["memory_total"].endswith(" GB") and rows["agent_pid"].isdigit()  # bytes read as GB
        assert len({line.index(value) for line, value in zip(metadata[1:], rows.values(), strict=True)}) == 1
        assert str(app.screen.query_one("#spark-jobs", Static).content) == "▁"  # no jobs: a flat line


async def test_the_jobs_view_and_the_fleet_rates(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        served = r.headers["X-Job-Id"]
    async with http.post(hub.url + "/jobs", json={"model": "absent", "prompt": "x"}) as r:
        rejected = r.headers["X-Job-Id"]
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "async": True}) as r:
        durable = (await r.json())["job_id"]
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(160, 30)) as pilot:
        header = app.query_one("#header", Static)
        await wait_until(lambda: "jobs/s" in str(header.content), what="the rates in the header")
        assert "tok/s" in str(header.content)
        await pilot.press("J")
        assert isinstance(app.screen, JobsScreen)
        table = app.screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 3, what="three jobs")

        def row(job_id: str) -> list[str]:
            return [str(cell) for cell in table.get_row(job_id)]

        await wait_until(lambda: row(durable)[1] == "done", what="the async job to be shown done")
        assert row(served)[:4] == [served[-8:], "done", "llama3", "n1"] and row(served)[9] == "24"
        assert row(rejected)[1] == "rejected" and "absent" in row(rejected)[10]
        assert row(durable)[0] == durable[-8:] + " ⧗"
        assert "3 " in str(app.screen.query_one("#jobs-summary", Static).content)
        nodes = app.screen_stack[0].query_one(NodeTable)
        sorted_by = nodes.sort_label
        await pilot.press("slash", "x", "s")  # the node table's keys do nothing here
        assert isinstance(app.screen, JobsScreen)
        assert nodes.filter_text == "" and nodes.sort_label == sorted_by
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]


async def test_the_models_view_pulls_onto_chosen_nodes_and_deletes_with_a_confirmation(fleet):
    hub = await fleet.hub()
    sims = [await fleet.sim(models=["llama3"], pull_seconds=0.3) for _ in range(2)]
    for n, sim in enumerate(sims):
        await fleet.node(hub, sim, f"n{n}.lab")  # dotted, as a host's FQDN
    app = OllamaTop(hub.url, interval=0.2)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_until(lambda: app.snapshot is not None, what="a first poll")
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 1, what="the one model")
        assert [str(c) for c in table.get_row("llama3:latest")][:4] == [
            "llama3",
            "4.8 GB",
            "2: n0.lab, n1.lab",
            "-",
        ]

        await pilot.press("p")
        pull = app.screen
        assert isinstance(pull, PullScreen)
        await pilot.press(*"phi3")
        pull.query_one(SelectionList).deselect("n1.lab")  # onto n0.lab only
        await pilot.press("enter")
        status = pull.query_one("#pull-status", Label)
        await wait_until(lambda: "done on every node" in str(status.content), what="the pull to end")
        assert pull.query_one("#bar-0", ProgressBar).progress == 100 and not pull.query("#bar-1")
        assert pull.outcomes == {"n0.lab": "success"} and [s.stats.pulls for s in sims] == [1, 0]
        await pilot.press("escape")
        await wait_until(lambda: table.row_count == 2, what="phi3 in the table")
        assert [str(c) for c in table.get_row("phi3:latest")][2] == "1: n0.lab"

        table.move_cursor(row=list(table.rows).index(next(k for k in table.rows if k.value == "phi3:latest")))
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDelete)
        await pilot.press("n")  # changed its mind: nothing happens
        assert app.screen is screen and table.row_count == 2
        await pilot.press("d", "y")
        await wait_until(lambda: table.row_count == 1, what="phi3 gone from the table")
        assert app.screen is screen
