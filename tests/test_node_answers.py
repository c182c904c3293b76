"""What a node's answer means to the hub: the agent-to-hub contract, end to end on loopback sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import pytest

from ollama_connector.hubd.routing.keys import PLACEMENT
from ollama_connector.sim.processes import agent_env
from tests.conftest import free_port, report_cpu, wait_until


async def stats(http, hub) -> dict:
    """The job counters of /stats (without the rates)."""
    async with http.get(hub.url + "/stats") as r:
        jobs = (await r.json())["jobs"]
    return {key: jobs[key] for key in ("in_flight", "served", "failed")}


async def test_a_long_non_streamed_job_runs_once_however_long_it_takes(fleet, http):
    # A timeout of 0.5 s, loads of a second, answers of a second: the timeout bounds silences, not answers.
    hub = await fleet.hub(NODE_REQUEST_TIMEOUT="0.5")
    sims = [await fleet.sim(tokens_per_second=10, load_delay=1.0) for _ in range(2)]
    for number, sim in enumerate(sims):
        await fleet.node(hub, sim, f"n{number}")
    async with http.post(
        hub.url + "/jobs",
        json={"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 10}},
    ) as r:
        assert r.status == 200 and (await r.json())["eval_count"] == 10
    chat = {"model": "llama3", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}
    async with http.post(hub.url + "/v1/chat/completions", json=chat) as r:
        assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] == 10
    stream = {"model": "mistral:7b", "prompt": "x", "options": {"num_predict": 3}}  # a stream after a load
    async with http.post(hub.url + "/api/generate", json=stream) as r:
        lines = [json.loads(line) for line in (await r.read()).splitlines()]
        assert r.status == 200 and lines[-1]["done"] and len(lines) == 4
    assert sum(sim.stats.requests for sim in sims) == 3
    assert [hub.registry.get(f"n{n}").failure_count for n in range(2)] == [0, 0]
    assert (await stats(http, hub))["served"] == 3


@pytest.mark.parametrize(
    ("path", "body", "message_of"),
    [
        ("/jobs", {"model": "llama3", "prompt": "x", "stream": False}, lambda b: b["detail"]),
        ("/v1/chat/completions", {"model": "llama3", "messages": []}, lambda b: b["error"]["message"]),
    ],
)
async def test_a_node_silent_after_accepting_a_job_gets_a_504_and_the_job_is_not_run_again(
    fleet, http, processes, caplog, path, body, message_of
):
    hub = await fleet.hub(NODE_REQUEST_TIMEOUT="1")
    stuck_ollama = await fleet.sim(hang_rate=1.0)
    other_ollama = await fleet.sim()
    agent = processes.start(
        "ollama-noded",
        **agent_env(hub.url, stuck_ollama.url, "stuck", free_port()),
    )
    await wait_until(lambda: hub.registry.get("stuck") is not None, what="the agent to register")
    # Both loads pinned (the agent's next heartbeat is 30 s away): the host's real CPU must not decide.
    await report_cpu(http, hub, "stuck", 0.0)
    await report_cpu(http, hub, await fleet.node(hub, other_ollama, "other"), 0.9)
    caplog.set_level(logging.DEBUG, logger="ollama_connector.hubd.jobs.answers")
    job = asyncio.create_task(http.post(hub.url + path, json=body))
    await wait_until(lambda: "accepted; waiting for its Ollama" in caplog.text, what="the agent to accept")
    assert stuck_ollama.stats.in_flight == 1
    agent.send_signal(signal.SIGSTOP)  # the agent falls silent, holding the job
    try:
        async with await job as r:
            assert r.status == 504 and r.headers["X-Node-Id"] == "stuck"
            assert "silent" in message_of(await r.json())
    finally:
        agent.send_signal(signal.SIGCONT)
    assert other_ollama.stats.requests == 0
    assert hub.registry.get("stuck").failure_count == 1
    assert (await stats(http, hub))["failed"] == 1


async def test_a_draining_nodes_refusal_fails_over_without_counting_against_it(fleet, http):
    hub = await fleet.hub(NODE_MAX_FAILURES="2")
    draining = await fleet.node(hub, await fleet.sim(), "draining")
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "other"), 0.9)
    draining.state.draining = True  # the agent refuses before the hub has heard it is draining
    for _ in range(4):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            assert r.status == 200 and r.headers["X-Node-Id"] == "other"
    record = hub.registry.get("draining")
    assert record.failure_count == 0 and hub.registry.status(record) == "online"
    assert (await stats(http, hub)) == {"in_flight": 0, "served": 4, "failed": 0}


async def test_a_model_the_node_no_longer_has_fails_over_without_counting_against_it(fleet, http):
    hub = await fleet.hub()
    stale = await fleet.sim()
    await fleet.node(hub, stale, "stale")
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "other"), 0.9)
    async with http.delete(stale.url + "/api/delete", json={"model": "llama3"}) as r:
        assert r.status == 200  # deleted behind the agent's back: the hub's list is stale until a heartbeat
    async with http.post(hub.url + "/api/chat", json={"model": "llama3", "messages": []}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "other"
    assert hub.registry.get("stale").failure_count == 0


async def test_ollama_down_fails_over_and_counts_against_the_node(fleet, http):
    hub = await fleet.hub()
    down = await fleet.sim()
    await fleet.node(hub, down, "down")
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "other"), 0.9)
    await down.stop()
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "other"
    assert hub.registry.get("down").failure_count == 1


async def test_an_openai_stream_broken_mid_way_ends_with_an_error_event_and_counts_as_failed(fleet, http):
    hub = await fleet.hub()
    dies = await fleet.node(hub, await fleet.sim(die_rate=1.0, tokens_per_second=200), "dies")
    await report_cpu(http, hub, dies, 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "good"), 0.9)
    chat = {"model": "llama3", "messages": [], "max_tokens": 10, "stream": True}
    async with http.post(hub.url + "/v1/chat/completions", json=chat) as r:
        assert r.status == 200 and r.headers["X-Node-Id"] == "dies"
        events = [line[6:] for line in (await r.read()).decode().splitlines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]" and "failed mid-stream" in chunks[-1]["error"]["message"]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:-1]][:2] == ["The", " sky"]
    assert hub.registry.get("dies").failure_count == 1
    assert (await stats(http, hub))["failed"] == 1


async def test_an_openai_stream_that_fails_before_its_first_token_fails_over(fleet, http):
    hub = await fleet.hub()
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(die_rate=1.0), "dies"), 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "good"), 0.9)
    chat = {"model": "llama3", "messages": [], "max_tokens": 1, "stream": True}
    async with http.post(hub.url + "/v1/chat/completions", json=chat) as r:
        body = await r.read()
        assert r.status == 200 and r.headers["X-Node-Id"] == "good" and b"error" not in body
    assert hub.registry.get("dies").failure_count == 1
    assert (await stats(http, hub)) == {"in_flight": 0, "served": 1, "failed": 0}


async def test_sequential_jobs_spread_over_idle_nodes(fleet, http):
    hub = await fleet.hub()
    for node_id, cpu in (("a", 0.03), ("b", 0.07)):  # idle, though never exactly equal
        sim = await fleet.sim()
        async with http.post(sim.url + "/api/generate", json={"model": "llama3"}) as r:
            assert r.status == 200  # loaded on both: equal in every way that matters
        await report_cpu(http, hub, await fleet.node(hub, sim, node_id), cpu)
    served_by = []
    for _ in range(12):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            served_by.append(r.headers["X-Node-Id"])
    assert served_by.count("a") == served_by.count("b") == 6


async def test_an_unload_that_fails_everywhere_counts_as_failed(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim()
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/api/generate", json={"model": "llama3", "keep_alive": 0}) as r:
        assert r.status == 200
    await sim.stop()
    async with http.post(hub.url + "/api/generate", json={"model": "llama3", "keep_alive": 0}) as r:
        assert r.status == 503 and "not answering" in (await r.json())["error"]
    assert (await stats(http, hub)) == {"in_flight": 0, "served": 1, "failed": 1}


async def test_a_pull_that_reports_success_but_leaves_no_model_waits_before_pulling_again(
    fleet, http, caplog
):
    sim = await fleet.sim(lost_pull_rate=1.0)
    hub = await fleet.hub()
    caplog.set_level(logging.WARNING, logger="ollama_connector.noded.pulls")
    await fleet.node(hub, sim, "n1", REQUIRED_MODELS="phi3", SKIP_MODEL_PULL="0")
    await wait_until(lambda: "reported success" in caplog.text, what="the lost pull to be noticed")
    async with http.get(sim.url + "/_sim/stats") as r:  # a round trip, in which a spinning loop would pull
        assert (await r.json())["pulls"] == 1


@pytest.mark.parametrize(("size", "second_goes_to"), [("0.5GB", "cold"), ("20GB", "warm")])
async def test_a_busy_loaded_model_waits_for_its_slot_unless_a_load_elsewhere_is_sooner(
    fleet, http, size, second_goes_to
):
    hub = await fleet.hub()
    models = [f"llama3={size}"]
    warm = await fleet.sim(tokens_per_second=20, models=models)
    cold = await fleet.sim(tokens_per_second=20, models=models)
    async with http.post(warm.url + "/api/generate", json={"model": "llama3"}) as r:
        assert r.status == 200
    await fleet.node(hub, warm, "warm")
    await fleet.node(hub, cold, "cold")
    await report_cpu(http, hub, "cold", 0.0)  # cold ranks first on everything but the loaded model
    await report_cpu(http, hub, "warm", 0.9)
    job = {"model": "llama3", "prompt": "x", "options": {"num_predict": 30}}  # 1.5 s
    async with http.post(hub.url + "/jobs", json={**job, "stream": False}) as r:
        assert r.headers["X-Node-Id"] == "warm"  # loaded, a slot free: no load; the hub learns a job's time
    async with http.post(hub.url + "/jobs", json=job) as first:
        assert first.headers["X-Node-Id"] == "warm"
        await first.content.readline()
        # warm's one slot is taken. Waiting for it takes about 1.5 s; a load on cold takes its size at the
        # hub's first guess of 1 s per GB, counted twice (it will have to make room again some day).
        async with http.post(hub.url + "/jobs", json={**job, "stream": False}) as second:
            assert second.headers["X-Node-Id"] == second_goes_to
        await first.read()
    assert cold.scheduler.stats.loads == (1 if second_goes_to == "cold" else 0)


async def test_jobs_wait_at_the_hub_rather_than_inside_a_busy_ollama(fleet, http):
    hub = await fleet.hub(QUEUE_TIMEOUT_SECONDS="30")
    sim = await fleet.sim(tokens_per_second=40)
    await fleet.node(hub, sim, "only")
    job = {"model": "llama3", "prompt": "x", "options": {"num_predict": 8}}
    async with http.post(hub.url + "/jobs", json=job) as first:
        await first.content.readline()
        waiting = asyncio.create_task(http.post(hub.url + "/jobs", json={**job, "stream": False}))
        await wait_until(lambda: hub.app[PLACEMENT].waiting == 1, what="the second job to wait at the hub")
        assert sim.stats.in_flight == 1  # not sent: Ollama holds only the running one
        await first.read()
    async with await waiting as r:
        assert r.status == 200 and (await r.json())["done"]


async def test_a_full_hub_queue_answers_server_busy_with_retry_after(fleet, http):
    hub = await fleet.hub(QUEUE_MAX="0", QUEUE_TIMEOUT_SECONDS="8")
    await fleet.node(hub, await fleet.sim(tokens_per_second=40), "only")
    job = {"model": "llama3", "prompt": "x", "options": {"num_predict": 8}}
    async with http.post(hub.url + "/jobs", json={**job, "stream": False}) as r:
        assert r.status == 200  # the hub learns that a job of llama3 takes it about 0.2 s
    async with http.post(hub.url + "/jobs", json=job) as first:
        await first.content.readline()
        async with http.post(hub.url + "/api/chat", json={"model": "llama3", "messages": []}) as r:
            # Retry-After: the jobs ahead (one) at the learned speed, in whole seconds (not the 8 s timeout)
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert (await r.json())[
                "error"
            ] == "server busy, please try again.  maximum pending requests exceeded"
        await first.read()


async def test_a_load_goes_where_the_model_fits_without_evicting_one(fleet, http):
    hub = await fleet.hub()
    models = ["a=6GB", "b=6GB"]
    small, big = await fleet.sim(models=models, vram_gb=10), await fleet.sim(models=models, vram_gb=20)
    async with http.post(small.url + "/api/generate", json={"model": "a"}) as r:
        assert r.status == 200  # a fills most of the small node
    await fleet.node(hub, small, "small", NODE_VRAM_GB="10")
    await fleet.node(hub, big, "big", NODE_VRAM_GB="20")
    await report_cpu(http, hub, "small", 0.0)  # small ranks first on everything but room
    await report_cpu(http, hub, "big", 0.9)
    async with http.post(hub.url + "/jobs", json={"model": "b", "prompt": "x", "stream": False}) as r:
        assert (
            r.status == 200 and r.headers["X-Node-Id"] == "big"
        )  # b fits there beside nothing; not on small
    assert small.scheduler.stats.unloads == 0


async def test_an_error_event_then_a_later_done_counts_as_failed_not_served(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(error_rate=1.0, tokens_per_second=200), "errs")
    chat = {"model": "llama3", "messages": [], "max_tokens": 10, "stream": True}
    async with http.post(hub.url + "/v1/chat/completions", json=chat) as r:
        events = [line[6:] for line in (await r.read()).decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "mid-stream" in json.loads(events[-2])["error"]["message"]
    assert hub.registry.get("errs").failure_count == 1 and hub.registry.get("errs").served == 0
    assert (await stats(http, hub))["failed"] == 1
