"""Every resource bounded: what one node or one caller sends cannot take the hub's memory, its event loop or
its disk. Bounds are asserted loosely, against a baseline of the same process in the same test."""

from __future__ import annotations

import asyncio
import io
import json

import psutil

from tests.conftest import Processes, wait_until

JOB = {"model": "llama3", "prompt": "x", "stream": False}


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


async def test_a_node_flooding_one_endless_line_is_cut_and_the_job_served_elsewhere(tmp_path, http):
    fleet = Processes(logs=tmp_path)
    try:
        flood, _ = fleet.sim(None, "--flood-rate", "1")
        hub, hub_proc = fleet.hub()
        fleet.node(hub, flood, "flood")
        before = rss_mb(hub_proc.pid)
        async with http.post(hub + "/api/generate", json={**JOB, "stream": True}) as r:
            refused = await r.text()  # alone, the streamed flood is cut at its line bound
        assert r.status == 503 and "a line longer than 16 MiB" in refused, refused
        good, _ = fleet.sim()
        fleet.node(hub, good, "good")
        for _ in range(3):
            async with http.post(hub + "/api/generate", json=JOB) as r:
                assert r.status == 200 and r.headers["X-Node-Id"] == "good", await r.text()
        async with http.get(hub + "/nodes/flood") as r:
            assert (await r.json())["failure_count"] >= 1
        # Cut at its bounds: the hub holds nothing like the hundreds of MB that streamed past.
        assert rss_mb(hub_proc.pid) - before < 120
    finally:
        fleet.stop()


async def test_a_chunked_heartbeat_is_read_no_further_than_its_bound(fleet, http):
    hub = await fleet.hub(CLUSTER_TOKEN="t" * 32)

    async def endless():
        yield json.dumps({"node_id": "x", "port": 9, "metadata": {"pad": ""}}).encode()[:-3]
        for _ in range(64):
            yield b"a" * 65536  # 4 MiB in all, far past the 256 KiB a heartbeat may be
            await asyncio.sleep(0)

    headers = {"Authorization": "Bearer " + "t" * 32}
    async with http.post(hub.url + "/nodes/heartbeat", data=endless(), headers=headers) as r:
        assert r.status == 413 and "larger than 262144 bytes" in (await r.json())["detail"]
    async with http.post(hub.url + "/nodes/heartbeat", data=endless()) as r:
        assert r.status == 401  # no token: refused before a byte of the body is read


async def test_a_wide_body_is_refused_before_it_is_parsed(fleet, http):
    hub = await fleet.hub()
    wide = json.dumps({"model": "llama3", "prompt": "x", **{f"f{n}": n for n in range(400_000)}}).encode()
    async with http.post(hub.url + "/api/generate", data=io.BytesIO(wide)) as r:
        assert r.status == 400 and "more than 50000" in (await r.json())["error"]
    # A quote and a colon inside a string are escaped (\":), and not counted as fields.
    prose = json.dumps({"model": "llama3", "prompt": 'he said "no": ' * 60_000}).encode()
    async with http.post(hub.url + "/api/generate", data=io.BytesIO(prose)) as r:
        assert r.status != 400, await r.text()


async def test_one_callers_async_jobs_hold_only_its_share(fleet, http):
    alice, bob = "alice-key-0123456789", "bob-key-0123456789ab"
    hub = await fleet.hub(
        API_KEYS=f"{alice},{bob}", MAX_ASYNC_JOBS="4", CALLER_SHARE="0.5", MAX_CONCURRENT_JOBS="2"
    )
    slow = await fleet.sim(tokens_per_second=2, num_parallel=8)
    await fleet.node(hub, slow, "n1", OLLAMA_NUM_PARALLEL="8")

    async def submit(key: str) -> tuple[int, dict]:
        body = {"model": "llama3", "prompt": "x", "async": True, "options": {"num_predict": 100}}
        async with http.post(hub.url + "/jobs", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            return r.status, await r.json()

    taken = [await submit(alice) for _ in range(2)]
    status, refused = await submit(alice)
    assert status == 429 and "share: 2 of MAX_ASYNC_JOBS=4" in refused["detail"]
    taken += [await submit(bob) for _ in range(2)]  # the others' room is theirs
    assert [status for status, _ in taken] == [202] * 4
    # Async jobs are outside MAX_CONCURRENT_JOBS: a live job of either still runs.
    job = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    async with http.post(hub.url + "/jobs", json=job, headers={"Authorization": f"Bearer {bob}"}) as r:
        assert r.status == 200, await r.text()
    for n, (_, body) in enumerate(taken):  # cancelled, so the agent's drain has nothing to wait for
        key = alice if n < 2 else bob
        async with http.delete(
            f"{hub.url}/jobs/{body['job_id']}", headers={"Authorization": f"Bearer {key}"}
        ):
            pass


async def test_many_slow_readers_of_one_long_answer_share_it(tmp_path, http):
    fleet = Processes(logs=tmp_path)
    try:
        ollama, _ = fleet.sim(None, "--tokens-per-second", "0")
        hub, hub_proc = fleet.hub(MAX_ANSWER_BYTES=str(64 << 20))
        fleet.node(hub, ollama, "n1")
        body = {"model": "llama3", "prompt": "x", "async": True, "options": {"num_predict": 80_000}}
        async with http.post(hub + "/jobs", json=body) as r:
            job_id = (await r.json())["job_id"]
        while True:  # about 7 MB of lines, kept
            async with http.get(f"{hub}/jobs/{job_id}") as r:
                if (await r.json())["status"] != "running" and (await r.json())["status"] != "queued":
                    break
            await asyncio.sleep(0.1)
        before = rss_mb(hub_proc.pid)
        readers = []
        for _ in range(40):  # each reads a little, then stops reading: the hub must not queue 7 MB for it
            response = await http.get(f"{hub}/jobs/{job_id}/stream")
            await response.content.readexactly(4096)
            readers.append(response)
        await asyncio.sleep(0.5)
        grown = rss_mb(hub_proc.pid) - before
        for response in readers:
            response.close()
        print(f"40 slow readers: the hub grew {grown:.0f} MB")
        assert grown < 100, grown  # 40 whole copies would be 280 MB
    finally:
        fleet.stop()


async def test_queued_async_jobs_wait_on_disk_not_in_memory(tmp_path, http):
    fleet = Processes(logs=tmp_path)
    try:
        ollama, _ = fleet.sim(None, "--tokens-per-second", "5")  # one slot, busy for a while
        hub, hub_proc = fleet.hub()
        fleet.node(hub, ollama, "n1")
        long = {"model": "llama3", "prompt": "x", "async": True, "options": {"num_predict": 25}}
        async with http.post(hub + "/jobs", json=long) as r:
            assert r.status == 202
        big = {"model": "llama3", "prompt": "y" * (4 << 20), "async": True, "options": {"num_predict": 1}}
        before = rss_mb(hub_proc.pid)
        for _ in range(16):  # 64 MB of bodies that wait for the slot
            async with http.post(hub + "/jobs", data=io.BytesIO(json.dumps(big).encode())) as r:
                assert r.status == 202, await r.text()
        grown = rss_mb(hub_proc.pid) - before
        # Kept whole they would be 64 MB and more (ten took 65 MB before); what grows now is buffers and the
        # journal's page cache, about 30 MB whatever the count.
        print(f"queued bodies: the hub grew {grown:.0f} MB")
        assert grown < 48, grown
    finally:
        fleet.stop()


async def test_connections_are_capped_and_the_next_one_is_told(fleet, http):
    hub = await fleet.hub(MAX_CONNECTIONS="8")
    held = [await asyncio.open_connection(hub.host, hub.port) for _ in range(8)]
    await wait_until(lambda: len(hub.runner.server.connections) == 8, what="the 8 connections accepted")
    reader, writer = await asyncio.open_connection(hub.host, hub.port)
    said = await asyncio.wait_for(reader.read(), 5)
    assert said.startswith(b"HTTP/1.1 503") and b"too many connections" in said
    writer.close()
    for _, idle in held:
        idle.close()
        await idle.wait_closed()
    await wait_until(lambda: not hub.runner.server.connections, what="the connections closed")

    async def answers() -> bool:
        async with http.get(hub.url + "/healthz") as r:
            return r.status == 200

    assert await answers()
