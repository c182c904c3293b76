"""POST /jobs end to end: hub, node agents and simulators on loopback sockets."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import report_cpu, wait_until


async def post_job(http: aiohttp.ClientSession, hub, **body):
    async with http.post(hub.url + "/jobs", json=body) as r:
        return r.status, dict(r.headers), await r.read()


async def test_non_streaming_job_returns_ollamas_object_with_job_and_node_ids(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    status, headers, body = await post_job(
        http, hub, model="llama3", prompt="Why?", stream=False, options={"num_predict": 3}, system="be brief"
    )
    answer = json.loads(body)
    assert status == 200 and headers["X-Node-Id"] == "n1" and len(headers["X-Job-Id"]) == 36
    assert answer["done"] and answer["eval_count"] == 3 and answer["model"] == "llama3"
    async with http.get(sim.url + "/_sim/requests") as r:
        last = (await r.json())[-1]
    assert last["system"] == "be brief" and last["options"] == {"num_predict": 3} and last["stream"] is False


async def test_stream_defaults_to_true_and_is_relayed_incrementally(fleet, http):
    sim = await fleet.sim(tokens_per_second=20)
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    async with http.post(
        hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "options": {"num_predict": 20}}
    ) as r:
        assert r.headers["Content-Type"] == "application/x-ndjson"
        first = json.loads(await r.content.readline())
        # The simulator is still producing when the caller already holds the first chunk.
        assert first["done"] is False and sim.stats.in_flight == 1 and sim.stats.completed == 0
        rest = [json.loads(line) for line in (await r.read()).splitlines()]
    assert rest[-1]["done"] is True and len(rest) == 20


@pytest.mark.parametrize("name", ["llama3", "LLAMA3", "llama3:latest", "library/llama3", "mistral:7B"])
async def test_model_names_follow_ollamas_rules(fleet, http, name):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    status, _, body = await post_job(http, hub, model=name, prompt="x", stream=False)
    assert status == 200, body


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"", "missing request body"),
        (b"[1, 2]", "request body must be a JSON object, not list"),
        (b'{"prompt": "x"}', "model: Field required"),
        (b'{"model": "llama3"}', "prompt: Field required"),
        (b'{"model": "", "prompt": "x"}', "model: String should have at least 1 character"),
        (b'{"model": 7, "prompt": "x"}', "model: Input should be a valid string"),
        (b'{"model": "llama3", "prompt": "x", "stream": "yes"}', "stream: Input should be a valid boolean"),
        (
            b'{"model": "llama3", "prompt": "x", "options": [1]}',
            "options: Input should be a valid dictionary",
        ),
    ],
)
async def test_bad_requests_get_400_naming_the_problem(fleet, http, body, detail):
    hub = await fleet.hub()
    async with http.post(hub.url + "/jobs", data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert detail in (await r.json())["detail"]


async def test_oversize_body_gets_413(fleet, http):
    hub = await fleet.hub(MAX_REQUEST_BYTES="2048")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x" * 4096}) as r:
        assert r.status == 413 and (await r.json()) == {"detail": "request body is larger than 2048 bytes"}


async def test_a_model_no_node_has_is_a_404_naming_it_and_counts_nowhere(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    status, headers, body = await post_job(http, hub, model="llama2", prompt="x")
    assert status == 404 and json.loads(body) == {"detail": "Model 'llama2' is not available on any node"}
    assert "X-Job-Id" in headers
    for path, body in (
        ("/api/generate", {"model": "llama2", "prompt": "x"}),
        ("/v1/chat/completions", {"model": "llama2", "messages": []}),
    ):
        async with http.post(hub.url + path, json=body) as r:
            assert r.status == 404
    async with http.get(hub.url + "/stats") as r:
        jobs = (await r.json())["jobs"]
    assert (jobs["served"], jobs["failed"]) == (0, 0)


async def test_all_nodes_failing_gives_the_seeds_503_with_every_error(fleet, http):
    hub = await fleet.hub()
    for node_id in ("a", "b"):
        await fleet.node(hub, await fleet.sim(fail_rate=1.0), node_id)
    status, headers, body = await post_job(http, hub, model="llama3", prompt="x", stream=False)
    detail = json.loads(body)["detail"]
    assert status == 503 and detail["message"] == "All candidate nodes failed to execute the job"
    assert detail["job_id"] == headers["X-Job-Id"]
    assert sorted(e["node_id"] for e in detail["errors"]) == ["a", "b"]
    assert all(e["status"] == 500 and "simulated" in e["message"] for e in detail["errors"])
    # The same failure on both nodes is the job's, not theirs (a request that breaks every engine).
    assert [hub.registry.get(n).failure_count for n in ("a", "b")] == [0, 0]


async def test_failover_to_the_next_node_before_the_first_byte(fleet, http):
    hub = await fleet.hub()
    broken = await fleet.node(hub, await fleet.sim(fail_rate=1.0), "broken")
    await report_cpu(http, hub, broken, 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "good"), 0.9)
    for stream in (True, False):
        status, headers, body = await post_job(http, hub, model="llama3", prompt="x", stream=stream)
        assert status == 200 and headers["X-Node-Id"] == "good"
        assert b'"done":true' in body and b"error" not in body
    assert hub.registry.get("broken").failure_count == 2 and broken.state.active_jobs == 0


async def test_a_stream_cut_before_its_first_token_fails_over(fleet, http):
    hub = await fleet.hub()
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(die_rate=1.0), "dies"), 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "good"), 0.9)
    status, headers, body = await post_job(http, hub, model="llama3", prompt="x", options={"num_predict": 1})
    assert status == 200 and headers["X-Node-Id"] == "good" and b"error" not in body


async def test_failure_mid_stream_ends_with_an_error_line(fleet, http):
    hub = await fleet.hub()
    # Tokens 5 ms apart, so the ones before the crash are on their way before the socket drops.
    dies = await fleet.node(hub, await fleet.sim(die_rate=1.0, tokens_per_second=200), "dies")
    await report_cpu(http, hub, dies, 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(), "good"), 0.9)
    status, headers, body = await post_job(http, hub, model="llama3", prompt="x", options={"num_predict": 10})
    lines = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and headers["X-Node-Id"] == "dies"
    assert [line["response"] for line in lines[:-1]] == ["The", " sky", " looks", " blue", " because"]
    assert "failed mid-stream" in lines[-1]["error"] and not any(line.get("done") for line in lines)
    # In words, not aiohttp's "Response payload is not completed: <TransferEncodingError: 400...>".
    assert "closed the connection mid-answer" in lines[-1]["error"] and "Error" not in lines[-1]["error"]
    assert hub.registry.get("dies").failure_count == 1 and hub.registry.get("dies").active_jobs == 0


async def test_callers_mistakes_pass_through_without_failover(fleet, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    status, headers, body = await post_job(http, hub, model="llama3", prompt="x", think="sideways")
    assert status == 400 and headers["X-Node-Id"] == "n1"
    assert json.loads(body)["detail"].startswith('invalid think value: "sideways"')
    async with http.post(hub.url + "/api/chat", json={"model": "llama3", "think": "sideways"}) as r:
        assert r.status == 400 and (await r.json())["error"].startswith("invalid think value")
    assert hub.registry.get("n1").failure_count == 0
    async with http.get(hub.url + "/stats") as r:
        jobs = (await r.json())["jobs"]
    assert (jobs["served"], jobs["failed"]) == (0, 0)  # a caller's mistake counts in neither


async def test_degraded_after_consecutive_failures_then_back_after_a_probe(fleet, http):
    hub = await fleet.hub(NODE_MAX_FAILURES="2", NODE_PROBE_INTERVAL="0.2")
    sim = await fleet.sim()
    flaky = await fleet.node(hub, sim, "flaky")
    record = hub.registry.get("flaky")
    port = sim.port
    await sim.stop()  # Ollama down: the agent answers 502, the hub fails over and counts
    for _ in range(2):
        status, _, body = await post_job(http, hub, model="llama3", prompt="x", stream=False)
        assert status == 503 and "not answering" in json.loads(body)["detail"]["errors"][0]["message"]
    assert hub.registry.status(record) == "degraded" and record.failure_count == 2
    status, _, body = await post_job(http, hub, model="llama3", prompt="x")
    assert (status, json.loads(body)["detail"]) == (503, "No healthy nodes available for requested model")
    async with http.get(hub.url + "/nodes/flaky") as r:
        assert (await r.json())["status"] == "degraded"

    # Probes fail while Ollama is down (each failure doubles the wait), then pass once it is back.
    await wait_until(lambda: record.probe_backoff >= 0.8, what="two failed probes")
    assert hub.registry.status(record) == "degraded"
    await fleet.sim(port=port)
    await wait_until(lambda: hub.registry.status(record) == "online", what="the node to recover")
    status, headers, _ = await post_job(http, hub, model="llama3", prompt="x", stream=False)
    assert status == 200 and headers["X-Node-Id"] == "flaky" and flaky.state.active_jobs == 0
    assert record.failure_count == 2 and record.consecutive_failures == 0


async def test_busy_nodes_rank_last(fleet, http):
    hub = await fleet.hub()
    small = ["llama3=0.5GB"]  # a load is quicker than waiting for the busy node's one slot
    slow = await fleet.sim(tokens_per_second=20, models=small)
    await report_cpu(http, hub, await fleet.node(hub, slow, "busy"), 0.0)
    await report_cpu(http, hub, await fleet.node(hub, await fleet.sim(models=small), "idle"), 0.9)
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}) as held:
        assert held.headers["X-Node-Id"] == "busy"
        await held.content.readline()
        assert hub.registry.get("busy").active_jobs == 1
        _, headers, _ = await post_job(http, hub, model="llama3", prompt="x", stream=False)
        assert headers["X-Node-Id"] == "idle"
    await wait_until(lambda: hub.registry.get("busy").active_jobs == 0, what="the held job to end")


async def test_a_callers_hang_up_cancels_the_generation(fleet, http):
    sim = await fleet.sim(tokens_per_second=20)
    hub = await fleet.hub()
    node = await fleet.node(hub, sim, "n1")
    record = hub.registry.get("n1")
    long_job = {"model": "llama3", "prompt": "x", "options": {"num_predict": 200}}
    async with http.post(hub.url + "/jobs", json=long_job) as r:
        await r.content.readline()
        r.close()  # hang up mid-stream
    await wait_until(lambda: sim.stats.cancelled == 1, what="the simulator to see the stream cancelled")
    await wait_until(lambda: record.active_jobs == node.state.active_jobs == 0, what="job counts to settle")

    with pytest.raises(TimeoutError):  # hang up while waiting for a non-streamed answer
        async with http.post(
            hub.url + "/jobs", json={**long_job, "stream": False}, timeout=aiohttp.ClientTimeout(total=0.3)
        ) as r:
            await r.read()
    await wait_until(lambda: sim.stats.cancelled == 2, what="the simulator to see the request cancelled")
    await wait_until(lambda: record.active_jobs == node.state.active_jobs == 0, what="job counts to settle")
    assert sim.stats.completed == 0 and record.failure_count == 0
