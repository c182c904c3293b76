"""A journal write that fails is never lost or hidden: a full disk answers 507 instead of a 202 whose job
would vanish, the rows wait and land once there is room; a row the database will never take is dropped
alone, and no transaction is left open for the next batch."""

from __future__ import annotations

import logging

from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.keys import JOURNAL
from ollama_connector.hubd.jobs.record import JobRecord
from tests.test_durable import done, submit

BIG = "x" * 200_000  # a prompt that needs new pages of the database


def limit_pages(db, pages: int | None):
    count = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages if pages is not None else count}")


async def test_a_full_disk_answers_507_and_the_waiting_rows_land_once_there_is_room(fleet, http, caplog):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    journal = hub.app[JOURNAL]
    await journal.read(limit_pages, None)  # SQLite now answers "database or disk is full" to any growth
    with caplog.at_level(logging.ERROR):
        async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": BIG, "async": True}) as r:
            refused = await r.json()
        assert r.status == 507 and "full" in refused["detail"] and r.headers["Retry-After"] == "10"
        assert journal.failing
    assert caplog.text.count("could not write the job journal") == 1  # said once while it lasts
    await journal.read(limit_pages, 1_000_000)  # room again
    job_id = await submit(http, hub.url, prompt=BIG)
    assert (await done(http, hub.url, job_id))["status"] == "done" and not journal.failing
    async with http.get(hub.url + "/jobs", params={"status": "failed"}) as r:
        failed = (await r.json())["jobs"]
    # The refused job's rows waited and landed: it is on record, as not accepted, and never ran.
    assert any("not accepted" in (j.get("error") or "") for j in failed), failed


async def test_a_row_the_database_will_never_take_is_dropped_alone(tmp_path, caplog):
    journal = Journal(tmp_path / "journal.sqlite3", max_days=30, max_jobs=1000)
    await journal.open()
    try:
        good, bad, after = (
            JobRecord(f"job-{n}", "/api/generate", model, "c")
            for n, model in enumerate(["llama3", "llama3\ud800", "mistral"])
        )
        for record in (good, bad):
            record.finish("done")
            journal.record(record)
        with caplog.at_level(logging.ERROR):
            await journal.flush()
        assert "dropped a row the job journal cannot take" in caplog.text and journal.writer.dropped == 1
        after.finish("done")
        journal.record(after)  # the next batch lands: no transaction was left open
        await journal.flush()
        ids = await journal.read(lambda db: [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY id")])
        assert ids == ["job-0", "job-2"] and not journal.failing
    finally:
        await journal.close()
