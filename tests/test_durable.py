"""Async jobs: handed in, run with no one connected, followed by several readers, cancelled, kept over a
restart of the hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3

import aiohttp

from ollama_connector.hubd.jobs.keys import LEDGER
from tests.conftest import free_port, wait_until

PROMPT = {"model": "llama3", "prompt": "tell me", "async": True}


async def submit(http: aiohttp.ClientSession, hub: str, headers: dict | None = None, **extra) -> str:
    async with http.post(hub + "/jobs", json={**PROMPT, **extra}, headers=headers or {}) as r:
        assert r.status == 202, await r.text()
        body = await r.json()
        assert r.headers["Location"] == f"/jobs/{body['job_id']}" == body["status_url"]
        # As it was when the answer left: a fast simulator may have finished it already.
        assert body["status"] in ("queued", "running", "done")
        assert body["stream_url"] == f"/jobs/{body['job_id']}/stream"
        return body["job_id"]


async def job(http: aiohttp.ClientSession, hub: str, job_id: str, headers: dict | None = None) -> dict:
    async with http.get(f"{hub}/jobs/{job_id}", headers=headers or {}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def done(
    http: aiohttp.ClientSession, hub: str, job_id: str, within: float = 20.0, headers: dict | None = None
) -> dict:
    async def ended() -> bool:
        return (await job(http, hub, job_id, headers))["status"] not in ("queued", "running")

    await wait_until(ended, within=within, what=f"job {job_id} to end")
    return await job(http, hub, job_id, headers)


async def read_stream(http: aiohttp.ClientSession, hub: str, job_id: str, start: int = 0) -> list[dict]:
    async with http.get(f"{hub}/jobs/{job_id}/stream", params={"from": str(start)}) as r:
        assert r.status == 200 and r.content_type == "application/x-ndjson"
        return [json.loads(line) async for line in r.content if line.strip()]


async def test_an_async_job_runs_with_no_one_connected_and_keeps_its_answer(fleet, both_journals):
    sim = await fleet.sim(tokens_per_second=200)
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    async with aiohttp.ClientSession() as caller:  # hands the job in and hangs up at once
        job_id = await submit(caller, hub.url, options={"num_predict": 30})
    async with aiohttp.ClientSession() as http:
        finished = await done(http, hub.url, job_id)
        lines = await read_stream(http, hub.url, job_id)
        assert (await read_stream(http, hub.url, job_id, start=29)) == lines[29:]
    assert finished["status"] == "done" and finished["node"] == "n1" and finished["kind"] == "async"
    assert len(lines) == 31 and lines[-1]["done"] is True
    answer = finished["answer"]  # the shape of a non-streamed /api/generate answer
    assert answer["done"] is True and answer["eval_count"] == 30 == finished["output_tokens"]
    assert answer["response"] == "".join(line["response"] for line in lines)


async def test_readers_attached_mid_stream_get_every_line_once_in_order(fleet, both_journals, http):
    sim = await fleet.sim(tokens_per_second=40)
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    job_id = await submit(http, hub.url, options={"num_predict": 40})
    first: list[dict] = []
    five_in = asyncio.Event()

    async def follow_from_the_start() -> None:
        async with http.get(f"{hub.url}/jobs/{job_id}/stream") as r:
            async for line in r.content:
                first.append(json.loads(line))
                if len(first) == 5:
                    five_in.set()

    reader = asyncio.create_task(follow_from_the_start())
    await five_in.wait()  # mid-stream: two more readers attach, from the start and from line 3
    again, later = await asyncio.gather(
        read_stream(http, hub.url, job_id), read_stream(http, hub.url, job_id, start=3)
    )
    await reader
    assert len(first) == 41 and first[-1]["done"] is True
    assert again == first and later == first[3:]


async def test_delete_cancels_an_async_job_on_its_node(fleet, both_journals, http):
    sim = await fleet.sim(tokens_per_second=20)
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    job_id = await submit(http, hub.url, options={"num_predict": 1000})
    await wait_until(lambda: sim.stats.in_flight == 1, what="the job to run")
    async with http.delete(f"{hub.url}/jobs/{job_id}") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "cancelled"
    await wait_until(lambda: sim.stats.cancelled == 1, what="the node's Ollama to see the cancellation")
    cancelled = await job(http, hub.url, job_id)
    assert cancelled["status"] == "cancelled" and "DELETE" in cancelled["error"]
    assert cancelled["node"] == "n1"  # where it ran
    async with http.get(f"{hub.url}/jobs/{job_id}/stream") as r:  # a re-attached reader is told
        last = json.loads((await r.read()).splitlines()[-1])
    assert last["done_reason"] == "cancelled" and "DELETE" in last["error"]
    async with http.delete(f"{hub.url}/jobs/{job_id}") as r:
        assert r.status == 409 and "already ended (cancelled)" in (await r.json())["detail"]


async def test_limits_on_async_jobs(fleet, both_journals, http):
    sim = await fleet.sim(tokens_per_second=50)
    hub = await fleet.hub(MAX_ASYNC_JOBS="1", MAX_ANSWER_BYTES="2048")
    await fleet.node(hub, sim, "n1")
    long_one = await submit(http, hub.url, options={"num_predict": 1000})
    async with http.post(hub.url + "/jobs", json=PROMPT) as r:
        assert r.status == 503 and r.headers["Retry-After"]
        assert "MAX_ASYNC_JOBS=1" in (await r.json())["detail"]
    stopped = await done(http, hub.url, long_one)  # its answer passes 2 KiB: stopped there
    assert stopped["status"] == "failed" and "MAX_ANSWER_BYTES=2048" in stopped["error"]
    await wait_until(lambda: sim.stats.cancelled == 1, what="the node's request to be cancelled")
    lines = await read_stream(http, hub.url, long_one)
    assert "MAX_ANSWER_BYTES" in lines[-1]["error"]  # the stream says why it ends
    async with http.get(f"{hub.url}/jobs/{long_one}/stream", params={"from": "-1"}) as r:
        assert r.status == 400 and "from must be a line number" in (await r.json())["detail"]


async def test_another_users_async_job_is_as_if_it_did_not_exist(fleet, both_journals, http):
    sim = await fleet.sim()
    hub = await fleet.hub(
        API_KEYS="alice-key-0123456789,bob-key-0123456789", ADMIN_KEYS="root-key-0123456789"
    )
    await fleet.node(hub, sim, "n1")
    alice, bob = (
        {"Authorization": "Bearer alice-key-0123456789"},
        {"Authorization": "Bearer bob-key-0123456789"},
    )
    root = {"Authorization": "Bearer root-key-0123456789"}
    job_id = await submit(http, hub.url, headers=alice)
    await done(http, hub.url, job_id, headers=alice)
    assert (await job(http, hub.url, job_id, alice))["answer"]["done"] is True
    for method, path in (("GET", ""), ("GET", "/stream"), ("DELETE", "")):
        async with http.request(method, f"{hub.url}/jobs/{job_id}{path}", headers=bob) as r:
            assert r.status == 404 and "not found" in (await r.json())["detail"]
    async with http.get(hub.url + "/jobs", headers=bob) as r:
        assert (await r.json())["jobs"] == []
    seen_by_root = await job(http, hub.url, job_id, root)  # an admin sees every job, answer included
    assert seen_by_root["answer"]["done"] is True and seen_by_root["key"] == "env"
    assert seen_by_root["caller"].startswith("env:") and "alice-key" not in json.dumps(seen_by_root)


async def test_a_hub_restart_keeps_answers_and_never_leaves_a_job_running(processes, http):
    fast, _ = processes.sim(None, "--models", "llama3", "--tokens-per-second", "200")
    slow, _ = processes.sim(None, "--models", "mistral", "--tokens-per-second", "5")
    port, saved = free_port(), {"HUB_STATE_FILE": str(processes.logs / "registry.json")}  # as under systemd
    hub, hub_proc = processes.hub(port, DRAIN_TIMEOUT_SECONDS="0", **saved)
    processes.node(hub, fast, "fast")
    processes.node(hub, slow, "slow")
    finished = await submit(http, hub, options={"num_predict": 10})
    await done(http, hub, finished)
    running = await submit(http, hub, model="mistral", options={"num_predict": 1000})
    await wait_until(lambda: _has_lines(http, hub, running), what="the slow job to produce a line")
    # Behind it, for the slow node's only slot, a job waits at the hub: it has produced nothing.
    unstarted = await submit(http, hub, model="mistral", options={"num_predict": 3})
    await wait_until(lambda: _waiting(http, hub), what="the second job to wait at the hub")
    hub_proc.terminate()
    await asyncio.to_thread(hub_proc.wait, 20)
    async with http.post(slow + "/_sim/config", json={"tokens_per_second": 0}) as r:
        assert r.status == 200

    hub, _ = processes.hub(port, **saved)  # the same journal: the same port's
    kept = await job(http, hub, finished)
    assert kept["status"] == "done" and kept["answer"]["eval_count"] == 10
    assert len(await read_stream(http, hub, finished)) == 11
    interrupted = await job(http, hub, running)
    assert interrupted["status"] == "interrupted" and "stopped" in interrupted["error"]
    assert 1 <= len(await read_stream(http, hub, running)) < 1000  # what it produced is kept
    ran_again = await done(http, hub, unstarted)  # once the nodes are back, the hub runs it again
    assert ran_again["status"] == "done" and ran_again["answer"]["eval_count"] == 3


async def _has_lines(http: aiohttp.ClientSession, hub: str, job_id: str) -> bool:
    async with http.get(f"{hub}/jobs/{job_id}/stream") as r:
        return bool(await r.content.readline())


async def _waiting(http: aiohttp.ClientSession, hub: str) -> bool:
    async with http.get(hub + "/stats") as r:
        return (await r.json())["queue"]["waiting"] == 1


async def test_after_a_crash_a_running_job_is_marked_interrupted(processes, http):
    slow, _ = processes.sim(None, "--models", "mistral", "--tokens-per-second", "20")
    port, saved = free_port(), {"HUB_STATE_FILE": str(processes.logs / "registry.json")}
    hub, hub_proc = processes.hub(port, **saved)
    processes.node(hub, slow, "slow")
    running = await submit(http, hub, model="mistral", options={"num_predict": 1000})
    journal = processes.logs / f"journal-{port}.sqlite3"
    await wait_until(lambda: _committed_lines(journal, running), what="a line of the job on disk")
    hub_proc.kill()  # no stop, no clean-up: what the journal had committed is all there is
    await asyncio.to_thread(hub_proc.wait, 20)
    hub, _ = processes.hub(port, **saved)
    crashed = await job(http, hub, running)
    assert crashed["status"] == "interrupted" and crashed["ended_at"] is not None


def _committed_lines(journal, job_id: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        return db.execute("SELECT count(*) FROM chunks WHERE job_id = ?", (job_id,)).fetchone()[0]


async def test_an_async_job_for_a_model_no_node_has_is_refused_at_once(fleet, both_journals, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    async with http.post(hub.url + "/jobs", json={**PROMPT, "model": "absent"}) as r:
        assert r.status == 404 and (await r.json())["detail"] == "Model 'absent' is not available on any node"


async def test_async_jobs_do_not_use_up_the_callers_limit(fleet, both_journals, http):
    one, other = await fleet.sim(tokens_per_second=20), await fleet.sim(tokens_per_second=20)
    hub = await fleet.hub(MAX_CONCURRENT_JOBS="1")
    await fleet.node(hub, one, "one")
    await fleet.node(hub, other, "other")
    long_one = await submit(http, hub.url, options={"num_predict": 1000})
    await wait_until(lambda: one.stats.in_flight + other.stats.in_flight == 1, what="the async job to run")
    # The one caller's job MAX_CONCURRENT_JOBS allows is still there for a caller: the async job has its own.
    async with http.post(hub.url + "/jobs", json={**PROMPT, "async": False, "stream": False}) as r:
        assert r.status == 200, await r.text()
    async with http.get(hub.url + "/jobs") as r:
        running = [j for j in (await r.json())["jobs"] if j["status"] == "running"]
    assert [j["job_id"] for j in running] == [long_one]
    async with http.delete(f"{hub.url}/jobs/{long_one}") as r:
        assert r.status == 200


async def test_an_async_job_cancelled_before_it_could_run_stays_cancelled(fleet, http, tmp_path):
    journal = {"JOURNAL_PATH": str(tmp_path / "journal.sqlite3")}
    hub = await fleet.hub(**journal)
    await fleet.node(hub, await fleet.sim(hang_rate=1.0), "hangs")
    job_id = await submit(http, hub.url)
    await wait_until(lambda: hub.registry.get("hangs").active_jobs == 1, what="the job to reach its node")
    await hub.stop()  # it produced nothing: queued again for the next start
    again = await fleet.hub(**journal)  # no node has the model yet: the job waits for one
    assert (await job(http, again.url, job_id))["status"] == "queued"
    async with http.delete(f"{again.url}/jobs/{job_id}") as r:
        assert r.status == 200 and (await r.json())["status"] == "cancelled"
    await wait_until(lambda: not again.app[LEDGER].live, what="the job to end")
    assert (await job(http, again.url, job_id))["status"] == "cancelled"  # the journal has it
    await again.stop()
    third = await fleet.hub(**journal)
    assert (await job(http, third.url, job_id))["status"] == "cancelled"  # never run again
