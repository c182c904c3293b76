"""The job journal: what GET /jobs shows of the jobs the hub ran, retention, and a broken database."""

from __future__ import annotations

import logging
import sqlite3
import time

from ollama_connector.hubd.jobs.journal_schema import SCHEMA_V1 as SCHEMA
from ollama_connector.shared.wire import short_job_id
from tests.conftest import wait_until


async def jobs(http, hub, **query) -> list[dict]:
    async with http.get(hub.url + "/jobs", params={k: str(v) for k, v in query.items()}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["jobs"]


async def test_every_job_is_recorded_and_listed(fleet, both_journals, http):
    sim = await fleet.sim()
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        first = r.headers["X-Job-Id"]
    async with http.post(hub.url + "/api/chat", json={"model": "llama3", "messages": []}) as r:
        await r.read()
        second = r.headers["X-Job-Id"]
    async with http.post(hub.url + "/jobs", json={"model": "absent", "prompt": "x"}) as r:
        assert r.status == 404
    listed = await jobs(http, hub)
    assert [j["job_id"] for j in listed[1:]] == [second, first]  # newest first
    rejected, chat, generate = listed
    assert rejected["status"] == "rejected" and "absent" in rejected["error"] and rejected["node"] is None
    assert chat["route"] == "/api/chat" and chat["status"] == "done" and chat["nodes_tried"] == ["n1"]
    assert generate["node"] == "n1" and generate["output_tokens"] == 24 and generate["prompt_tokens"] > 0
    assert generate["caller"] == "addr:127.0.0.1" and generate["kind"] == "sync"
    for field in ("arrived_at", "started_at", "first_token_at", "ended_at"):
        assert generate[field].endswith("Z")
    assert (
        0
        <= generate["queue_seconds"]
        <= generate["time_to_first_token_seconds"]
        <= generate["duration_seconds"]
    )

    assert [j["job_id"] for j in await jobs(http, hub, status="rejected")] == [rejected["job_id"]]
    assert [j["job_id"] for j in await jobs(http, hub, model="llama3", limit=1)] == [second]
    for spelling in ("llama3:latest", "LLAMA3", "library/llama3"):  # as the hub matches model names
        assert [j["job_id"] for j in await jobs(http, hub, model=spelling, limit=1)] == [second]
    assert len(await jobs(http, hub, node="n1")) == 2
    assert await jobs(http, hub, since=time.time() + 60) == []
    assert len(await jobs(http, hub, since="2020-01-01T00:00:00Z")) == 3
    async with http.get(f"{hub.url}/jobs/{first}") as r:
        assert (await r.json())["job_id"] == first and "answer" not in await r.json()  # not async: not kept
    async with http.get(hub.url + "/jobs/no-such-job") as r:
        assert r.status == 404 and (await r.json())["detail"] == "job no-such-job not found"
    for bad, named in (
        ({"limit": "0"}, "limit"),
        ({"status": "odd"}, "status"),
        ({"colour": "red"}, "colour"),
    ):
        async with http.get(hub.url + "/jobs", params=bad) as r:
            assert r.status == 400 and named in (await r.json())["detail"]
    async with http.get(f"{hub.url}/jobs/{first}/stream") as r:
        assert r.status == 409 and "was not async" in (await r.json())["detail"]


async def test_jobs_in_progress_are_listed_as_running(fleet, both_journals, http):
    sim = await fleet.sim(tokens_per_second=20)
    hub = await fleet.hub()
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}) as r:
        await r.content.readline()  # the first chunk is in: the job runs
        (running,) = await jobs(http, hub, status="running")
        assert running["job_id"] == r.headers["X-Job-Id"] and running["node"] == "n1"  # where it runs
        assert running["nodes_tried"] == ["n1"] and running["ended_at"] is None
    # The caller hung up mid-stream.
    await wait_until(lambda: _one_with_status(http, hub, "cancelled"), what="the job to end as cancelled")


async def _one_with_status(http, hub, status: str) -> bool:
    return len(await jobs(http, hub, status=status)) == 1


async def test_retention_by_count_and_age(fleet, http, tmp_path):
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:  # a job from long ago, as an earlier run of the hub wrote it
        db.executescript(SCHEMA)
        db.execute(
            "INSERT INTO jobs (id, route, model, caller, arrived, ended, status, nodes, durable)"
            " VALUES ('old', '/jobs', 'llama3', 'addr:127.0.0.1', 1e9, 1e9, 'done', '[]', 0)"
        )
    sim = await fleet.sim()
    hub = await fleet.hub(JOURNAL_PATH=str(path), JOURNAL_MAX_JOBS="3", JOURNAL_MAX_DAYS="30")
    await fleet.node(hub, sim, "n1")
    assert [j["job_id"] for j in await jobs(http, hub)] == ["old"]
    ids = []
    for _ in range(5):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            ids.append(r.headers["X-Job-Id"])
    await wait_until(lambda: _count(http, hub, 3), what="retention to keep the newest three")
    assert [j["job_id"] for j in await jobs(http, hub)] == ids[:1:-1]


async def _count(http, hub, count: int) -> bool:
    return len(await jobs(http, hub)) == count


async def test_a_damaged_journal_is_kept_aside_and_a_fresh_one_started(fleet, http, tmp_path, caplog):
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    caplog.set_level(logging.INFO, logger="ollama_connector.hubd.jobs.journal")
    sim = await fleet.sim()
    hub = await fleet.hub(JOURNAL_PATH=str(path))  # starts: no restart loop under systemd
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    async with http.get(hub.url + "/jobs") as r:
        listing = await r.json()
        assert r.status == 200 and len(listing["jobs"]) == 1 and listing["journal"] == "ok"
    [aside] = tmp_path.glob("journal.sqlite3.damaged-*")
    assert aside.read_bytes().startswith(b"this is not a database")  # kept for inspection
    assert caplog.text.count("is damaged") == 1 and str(aside) in caplog.text


async def test_a_journal_that_cannot_be_opened_is_reported_once_and_the_hub_routes_on(
    fleet, http, tmp_path, caplog
):
    path = tmp_path / "journal.sqlite3"
    path.mkdir()  # a folder where the database should be
    caplog.set_level(logging.INFO, logger="ollama_connector.hubd.jobs.journal")
    sim = await fleet.sim()
    hub = await fleet.hub(JOURNAL_PATH=str(path))
    await fleet.node(hub, sim, "n1")
    for _ in range(3):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            assert r.status == 200
    async with http.get(hub.url + "/jobs") as r:
        listing = await r.json()
        assert r.status == 200 and listing["jobs"] == [] and str(path) in listing["journal"]
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "async": True}) as r:
        assert r.status == 503 and "need the job journal" in (await r.json())["detail"]
    assert caplog.text.count("journal is unavailable") == 1


async def test_the_journal_holds_a_key_id_never_the_key(fleet, http, tmp_path):
    path = tmp_path / "journal.sqlite3"
    sim = await fleet.sim()
    hub = await fleet.hub(JOURNAL_PATH=str(path), API_KEYS="sekrit-key-0123456789")
    await fleet.node(hub, sim, "n1")
    key = {"Authorization": "Bearer sekrit-key-0123456789"}
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}, headers=key) as r:
        await r.read()
    async with http.get(hub.url + "/jobs", headers=key) as r:
        (job,) = (await r.json())["jobs"]
    assert job["caller"].startswith("env:") and "sekrit" not in job["caller"] and job["key"] == "env"
    await hub.stop()  # everything written and closed
    assert path.stat().st_mode & 0o777 == 0o600  # async jobs' prompts and answers are in it
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert job["job_id"].encode() in stored and b"sekrit-key-0123456789" not in stored


async def test_a_job_is_found_by_the_part_of_its_id_that_lists_show(fleet, both_journals, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    ids = []
    for _ in range(2):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            ids.append(r.headers["X-Job-Id"])
    first, second = ids
    # UUIDv7 begins with its time: ids of one minute share their head.
    head = first[: next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)]
    assert len(head) >= 6 and short_job_id(first) != short_job_id(second)
    async with http.get(f"{hub.url}/jobs/{short_job_id(first)}") as r:
        assert r.status == 200 and (await r.json())["job_id"] == first
    async with http.get(f"{hub.url}/jobs/{head}") as r:
        assert r.status == 400 and "more than one job" in (await r.json())["detail"]
    async with http.get(f"{hub.url}/jobs/{'f' * 12}") as r:
        assert r.status == 404
