"""A shared journal's database that dies and comes back (PostgreSQL killed, then served again): the hub goes
on routing meanwhile, says the journal is failing, keeps the records it could not write, and writes them once
the database answers again; async jobs are refused while it is away, never accepted and lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import throwaway_postgres, wait_until

JOB = {"model": "llama3", "prompt": "x", "stream": False}


@pytest.fixture
def own_postgres():
    """This test kills its server: not the session's."""
    yield from throwaway_postgres()


async def test_a_database_outage_loses_no_record_and_accepts_no_async_job_it_cannot_keep(
    fleet, http, own_postgres
):
    hub = await fleet.hub(JOURNAL_URL=own_postgres.database(), JOB_LEASE_SECONDS="1")
    await fleet.node(hub, await fleet.sim(), "n1")
    ran = []
    async with http.post(hub.url + "/jobs", json=JOB) as r:
        ran.append(r.headers["X-Job-Id"])
    await asyncio.to_thread(own_postgres.crash)
    for _ in range(3):  # routed as ever, the database away
        async with http.post(hub.url + "/jobs", json=JOB) as r:
            assert r.status == 200
            ran.append(r.headers["X-Job-Id"])

    async def said_failing() -> bool:
        async with http.get(hub.url + "/jobs") as r:
            return (await r.json())["journal"] == "failing"

    await wait_until(said_failing, what="the journal to be said failing")
    async with http.post(hub.url + "/jobs", json={**JOB, "async": True}) as r:
        assert r.status == 503 and "could not be kept on disk" in (await r.json())["detail"]
    await asyncio.to_thread(own_postgres.restart)

    async def all_listed() -> bool:
        async with http.get(hub.url + "/jobs") as r:
            body = await r.json()
        return body["journal"] == "ok" and set(ran) <= {j["job_id"] for j in body["jobs"]}

    await wait_until(all_listed, within=30, what="the records kept meanwhile to land")
    async with http.post(hub.url + "/jobs", json={**JOB, "async": True}) as r:
        assert r.status == 202
