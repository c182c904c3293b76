"""A hostile caller on the same network: each finding of the hostile review, as a regression test."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.wire import MAX_MODELS
from tests.conftest import report_cpu, wait_until


async def heartbeat(http, hub, **fields) -> tuple[int, dict]:
    body = {"node_id": "evil", "port": 9, "models": ["llama3"], **fields}
    async with http.post(hub.url + "/nodes/heartbeat", json=body) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(
    "address",
    ["::1]:9/steal?via=heartbeat#", "x@127.0.0.1", "127.0.0.1:9", "hub.lan/path", "http://127.0.0.1", "a b"],
)
async def test_a_heartbeat_address_is_a_host_and_nothing_else(fleet, http, address):
    hub = await fleet.hub()
    status, body = await heartbeat(http, hub, address=address)
    assert status == 400 and body["detail"].startswith("address: Value error, must be a host alone")
    assert hub.registry.get("evil") is None


@pytest.mark.parametrize("address", [None, "127.0.0.1", "localhost", "127.0.0.2", "::ffff:127.0.0.1"])
async def test_the_hub_never_registers_its_own_address(fleet, http, address):
    hub = await fleet.hub()
    status, body = await heartbeat(http, hub, port=hub.port, **({"address": address} if address else {}))
    assert status == 400 and "is this hub's own address" in body["detail"]
    assert len(hub.registry) == 0


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "::ffff:169.254.169.254"]
)
async def test_the_hub_never_dials_metadata_link_local_or_multicast_addresses(fleet, http, address):
    hub = await fleet.hub()
    status, body = await heartbeat(http, hub, address=address)
    assert status == 400 and "is no address an agent listens at" in body["detail"]
    assert len(hub.registry) == 0


async def test_an_agent_whose_ollama_is_the_hub_cannot_make_a_loop(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim()
    await fleet.node(hub, sim, "good")
    loopy = await fleet.node(hub, hub.url, "loopy")  # its "Ollama" is the hub itself
    await wait_until(lambda: hub.registry.get("loopy").model_keys, what="loopy to list the hub's models")
    assert loopy.state.models
    await report_cpu(http, hub, "loopy", 0.0)  # loopy ranks first
    await report_cpu(http, hub, "good", 0.9)
    for _ in range(4):
        async with http.post(
            hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}
        ) as r:
            assert r.status == 200 and r.headers["X-Node-Id"] == "good"
    assert sim.stats.requests == 4  # each job ran once: a looped copy was refused at the hub's door
    assert hub.registry.get("loopy").failure_count >= 1


async def test_node_networks_keep_nodes_inside_them(fleet, http):
    hub = await fleet.hub(NODE_NETWORKS="10.0.0.0/8, fd00::/8")
    status, body = await heartbeat(http, hub)
    assert status == 403 and body["detail"] == "address 127.0.0.1 is outside NODE_NETWORKS"
    status, _ = await heartbeat(http, hub, address="10.1.2.3")
    assert status == 200 and hub.registry.get("evil").base_url == "http://10.1.2.3:9"


async def test_without_node_networks_the_hub_dials_only_where_heartbeats_come_from(fleet, http):
    hub = await fleet.hub()
    for elsewhere in ("10.1.2.3", "127.0.0.2", "::1"):  # another machine, or another address of this one
        status, body = await heartbeat(http, hub, address=elsewhere)
        assert (
            status == 403 and f"address {elsewhere} is not where this heartbeat comes from" in body["detail"]
        )
    assert len(hub.registry) == 0
    status, _ = await heartbeat(http, hub, address="localhost")  # a name of the source itself is fine
    assert status == 200 and hub.registry.get("evil").base_url == "http://localhost:9"


async def test_max_nodes_refuses_new_nodes_and_says_so_once(fleet, http, caplog):
    hub = await fleet.hub(MAX_NODES="2")
    caplog.set_level(logging.WARNING, logger="ollama_connector.hubd.routing.admission")
    for number in range(5):
        status, body = await heartbeat(http, hub, node_id=f"n{number}")
        assert status == (200 if number < 2 else 403)
    assert body["detail"] == "the hub has MAX_NODES=2 nodes and takes no new one"
    assert (await heartbeat(http, hub, node_id="n0"))[0] == 200  # a known node still beats
    assert caplog.text.count("registry full") == 1


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"models": [f"m{i}" for i in range(MAX_MODELS + 1)]}, "models: List should have at most 1000 items"),
        ({"models": ["x" * 301]}, "models.0: String should have at most 300 characters"),
        ({"metadata": {"blob": "x" * 20000}}, "metadata: Value error, is larger than 16384 bytes"),
        ({"metadata": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "metadata: Value error, nests deeper than 4"),
        ({"node_id": "evil\x1b[31m"}, "node_id: String should match pattern"),
        ({"ipv4": "not-an-ip"}, "ipv4: Value error"),
    ],
)
async def test_heartbeats_are_bounded(fleet, http, fields, says):
    hub = await fleet.hub()
    status, body = await heartbeat(http, hub, **fields)
    assert status == 400 and body["detail"].startswith(says), body


async def test_an_oversize_heartbeat_is_a_413(fleet, http):
    hub = await fleet.hub()
    async with http.post(hub.url + "/nodes/heartbeat", data=b"{" + b" " * 300_000 + b"}") as r:
        assert r.status == 413 and "larger than 262144 bytes" in (await r.json())["detail"]


async def test_one_bad_version_does_not_break_api_version(fleet, http):
    hub = await fleet.hub()
    await heartbeat(http, hub, metadata={"ollama_version": "1.²"})
    await heartbeat(http, hub, node_id="other", metadata={"ollama_version": {"not": "a string"}})
    await heartbeat(http, hub, node_id="fine", metadata={"ollama_version": "0.5.10"})
    await heartbeat(http, hub, node_id="older", metadata={"ollama_version": "0.5.9"})
    async with http.get(hub.url + "/api/version") as r:
        assert r.status == 200 and (await r.json())["version"] == "0.5.9"  # "1.²" is left out


@pytest.mark.parametrize(
    "path",
    [
        "/jobs",
        "/api/generate",
        "/api/chat",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/nodes/heartbeat",
    ],
)
async def test_deeply_nested_json_is_a_400_not_a_traceback(fleet, http, caplog, path):
    hub = await fleet.hub()
    deep = b'{"model": "llama3", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    async with http.post(hub.url + path, data=deep) as r:
        assert r.status == 400 and "nests deeper than 64 levels" in json.dumps(await r.json())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_long_model_names_are_refused_and_the_name_cache_stays_small(fleet, http):
    hub = await fleet.hub()
    name = "m" * 20_000
    for path, body in (
        ("/jobs", {"model": name, "prompt": "x"}),
        ("/api/generate", {"model": name, "prompt": "x"}),
        ("/v1/chat/completions", {"model": name, "messages": []}),
        ("/v1/messages", {"model": name, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    ):
        async with http.post(hub.url + path, json=body) as r:
            text = json.dumps(await r.json())
            assert r.status == 400 and (
                "at most 300 characters" in text or "longer than 300 characters" in text
            )
    # Refused before any name is canonicalised, so the name cache holds only short names.
    assert canonical.cache_info().maxsize * 300 < 2 * 1024 * 1024


async def test_a_client_trickling_its_body_is_cut_off(fleet):
    hub = await fleet.hub(CLIENT_TIMEOUT="0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    writer.write(
        b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # no byte more is sent
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.3 s" in body


async def test_a_client_trickling_its_headers_is_cut_off(fleet):
    hub = await fleet.hub(CLIENT_TIMEOUT="0.3")
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
    writer.close()
    await writer.wait_closed()


async def test_the_hub_still_serves_after_all_that(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    bad = [{"address": "x@127.0.0.1"}, {"metadata": {"ollama_version": "1.²"}}, {"models": ["y" * 400]}]
    for fields in bad:
        await heartbeat(http, hub, **fields)
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x", "stream": False}) as r:
        assert r.status == 200
    async with http.get(hub.url + "/api/tags") as r:
        assert r.status == 200 and (await r.json())["models"]


async def test_rate_limits_per_key_in_each_routes_format(fleet, http):
    hub = await fleet.hub(
        RATE_LIMIT="60", RATE_LIMIT_BURST="2", API_KEYS="k1-0123456789abcdef,k2-0123456789abcdef"
    )
    await fleet.node(hub, await fleet.sim(), "n1")  # heartbeats are never limited
    k1, k2 = ({"Authorization": f"Bearer {k}"} for k in ("k1-0123456789abcdef", "k2-0123456789abcdef"))
    for _ in range(2):
        async with http.get(hub.url + "/stats", headers=k1) as r:
            assert r.status == 200 and r.headers["X-RateLimit-Limit"] == "60"
    for path, message_of in (
        ("/stats", lambda b: b["detail"]),
        ("/api/tags", lambda b: b["error"]),
        ("/v1/models", lambda b: b["error"]["message"]),
    ):
        async with http.get(hub.url + path, headers=k1) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
            assert r.headers["X-RateLimit-Remaining"] == "0" and int(r.headers["X-RateLimit-Reset"]) >= 1
            assert message_of(await r.json()).startswith("rate limit: 60 requests a minute")
    async with http.post(hub.url + "/jobs", headers=k2, json={"model": "llama3", "prompt": "x"}) as r:
        assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == "1"  # streamed, and still told
        await r.read()
    async with http.get(hub.url + "/healthz") as r:
        assert r.status == 200 and "X-RateLimit-Limit" not in r.headers


async def test_the_hub_caps_the_jobs_it_runs_at_once(fleet, http):
    hub = await fleet.hub(MAX_CONCURRENT_JOBS="1")
    await fleet.node(hub, await fleet.sim(tokens_per_second=20), "n1")
    async with http.post(hub.url + "/jobs", json={"model": "llama3", "prompt": "x"}) as held:
        await held.content.readline()
        async with http.post(hub.url + "/api/chat", json={"model": "llama3", "messages": []}) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert "MAX_CONCURRENT_JOBS=1" in (await r.json())["error"]
        await held.read()
    chat = {"model": "llama3", "messages": [], "stream": False}
    async with http.post(hub.url + "/api/chat", json=chat) as r:
        assert r.status == 200


async def test_transcription_forms_are_bounded(fleet, http):
    hub = await fleet.hub(MAX_REQUEST_BYTES="65536")
    route = hub.url + "/v1/audio/transcriptions"
    many = aiohttp.FormData({"model": "llama3"}, default_to_multipart=True)
    for i in range(70):
        many.add_field(f"f{i}", "x")
    broken = b"--b\r\nContent-Disposition: form-data; name=model\r\n\r\nllama3\r\n--b--garbage"
    big = aiohttp.FormData({"model": "llama3"})
    big.add_field("file", bytes(70_000), filename="a.wav")
    for data, headers, status, says in (
        (many, {}, 400, "more than 64 parts"),
        (broken, {"Content-Type": "multipart/form-data; boundary=b"}, 400, "Invalid boundary"),
        (b"x", {"Content-Type": "multipart/form-data"}, 400, "failed to parse multipart form"),
        (big, {}, 413, "larger than 65536 bytes"),
    ):
        async with http.post(route, data=data, headers=headers) as r:
            error = (await r.json())["error"]
            assert r.status == status and says in error["message"] and error["type"], error
