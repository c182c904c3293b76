"""Two hubs, one journal in a real PostgreSQL (JOURNAL_URL): an async job handed to one hub is read, followed
and cancelled from the other; when its hub dies (SIGKILL) or stops, the other takes it over once its lease
lapses and runs it again from the start, its readers told so; either hub lists all jobs and usage."""

from __future__ import annotations

import asyncio
import signal
import time

import psycopg

from ollama_connector.sim.processes import ProcessFleet, wait_http
from tests.conftest import wait_until
from tests.test_durable import done, read_stream, submit

FAST = {"JOB_LEASE_SECONDS": "1"}  # a lapsed lease is seen within a second


async def two_hubs(fleet, pg_url, tokens_per_second: float = 40):
    fleet.journal_url = pg_url
    first, second = await fleet.hub(**FAST), await fleet.hub(**FAST)
    sim = await fleet.sim(tokens_per_second=tokens_per_second)
    await fleet.node(f"{first.url},{second.url}", sim, "n1", wait=False, HEARTBEAT_INTERVAL="0.5")
    for hub in (first, second):
        await wait_until(lambda hub=hub: hub.registry.get("n1") is not None, what="both hubs to know n1")
    return first, second, sim


async def test_an_async_job_is_read_followed_and_cancelled_from_the_other_hub(fleet, http, pg_url):
    first, second, _ = await two_hubs(fleet, pg_url)
    job_id = await submit(http, first.url, options={"num_predict": 20})
    followed = await read_stream(http, second.url, job_id)  # live, from the journal, to its end
    assert len(followed) == 21 and followed[-1]["done"] is True
    assert followed == await read_stream(http, first.url, job_id)
    finished = await done(http, second.url, job_id)
    assert finished["status"] == "done" and finished["answer"]["eval_count"] == 20
    # Cancelled from the hub that does not run it: the hub that does stops it on its node.
    slow = await submit(http, first.url, options={"num_predict": 2000})
    await wait_until(lambda: _running(http, second.url, slow), what="the slow job to run")
    async with http.delete(f"{second.url}/jobs/{slow}") as r:
        assert r.status == 200 and (await r.json())["status"] == "cancelled"
    assert (await done(http, first.url, slow))["status"] == "cancelled"
    last = (await read_stream(http, second.url, slow))[-1]
    assert last["done"] is True and last["done_reason"] == "cancelled"


async def _running(http, hub: str, job_id: str) -> bool:
    async with http.get(f"{hub}/jobs/{job_id}") as r:
        return (await r.json())["status"] == "running"


async def test_either_hub_lists_the_clusters_jobs_and_usage(fleet, http, pg_url):
    first, second, _ = await two_hubs(fleet, pg_url)
    ran = []
    for hub in (first, second):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            ran.append(r.headers["X-Job-Id"])

    async def listed(hub) -> bool:
        async with http.get(hub.url + "/jobs") as r:
            return {j["job_id"] for j in (await r.json())["jobs"]} == set(ran)

    for hub in (first, second):
        await wait_until(lambda hub=hub: listed(hub), what="both hubs' jobs in each list")
        async with http.get(hub.url + "/usage") as r:
            (row,) = (await r.json())["usage"]
        assert row["jobs"] == 2 and row["model"] == "llama3"
    with psycopg.connect(pg_url) as db:  # migrated once, though two hubs started on it
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,)]


async def test_a_stopping_hub_hands_its_async_jobs_to_the_other(fleet, http, pg_url):
    first, second, _ = await two_hubs(fleet, pg_url, tokens_per_second=20)
    job_id = await submit(http, first.url, options={"num_predict": 40})
    await wait_until(lambda: _running(http, second.url, job_id), what="the job to run on the first hub")
    started = time.monotonic()
    await first.stop()
    finished = await done(http, second.url, job_id, within=30)
    assert finished["status"] == "done" and finished["answer"]["eval_count"] == 40
    assert time.monotonic() - started < 10  # handed over at once, then run again from the start
    lines = await read_stream(http, second.url, job_id)
    (restart,) = [n for n, line in enumerate(lines) if "restarted" in line]
    assert "runs it again from the start" in lines[restart]["restarted"]
    assert len(lines[restart + 1 :]) == 41 and lines[-1]["done"] is True
    assert finished["answer"]["response"] == "".join(line["response"] for line in lines[restart + 1 :])


async def test_a_killed_hubs_async_job_is_taken_over_once_its_lease_lapses(tmp_path, http, pg_url):
    fleet = ProcessFleet(logs=tmp_path)
    try:
        ollama, _ = fleet.sim(None, "--tokens-per-second", "20")
        env = {"JOURNAL_URL": pg_url, "JOB_LEASE_SECONDS": "2"}
        (hub1, first), (hub2, _) = fleet.hub(**env), fleet.hub(**env)
        fleet.node(f"{hub1},{hub2}", ollama, "n1", wait=False, HEARTBEAT_INTERVAL="0.5")
        for hub in (hub1, hub2):
            await asyncio.to_thread(wait_http, hub + "/nodes/n1", what=f"n1 registered with {hub}")
        job_id = await submit(http, hub1, options={"num_predict": 60})
        await wait_until(lambda: _running(http, hub2, job_id), what="it to run on the first hub")
        first.send_signal(signal.SIGKILL)  # no goodbye: its lease lapses in 2 s
        await asyncio.to_thread(first.wait, 10)
        finished = await done(http, hub2, job_id, within=30)
        assert finished["status"] == "done" and finished["answer"]["eval_count"] == 60
        lines = await read_stream(http, hub2, job_id)
        (restart,) = [n for n, line in enumerate(lines) if "restarted" in line]
        assert lines[-1]["done"] is True and len(lines[restart + 1 :]) == 61
    finally:
        await asyncio.to_thread(fleet.stop)


async def test_the_journal_url_password_is_never_shown_or_logged(fleet, http, postgres, caplog):
    wrong = postgres.url().replace(postgres.password, "not-the-password-42")
    hub = await fleet.hub(JOURNAL_URL=wrong)
    async with http.get(hub.url + "/jobs") as r:
        said = (await r.json())["journal"]
    assert (
        said.startswith("postgresql://postgres:***@127.0.0.1:") and "password authentication failed" in said
    )
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "async": True}) as r:
        assert r.status == 503 and "journal" in (await r.json())["detail"]
    assert "not-the-password-42" not in caplog.text and "not-the-password-42" not in said
    assert "the job journal is unavailable" in caplog.text
