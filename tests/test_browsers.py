"""A web page cannot drive the hub: foreign origins refused, a rebound DNS name refused on a loopback hub,
no heartbeat from a browser; allowed origins get CORS, preflights included."""

from __future__ import annotations

from ollama_connector.shared.wire import Heartbeat, Load

CREATE = {"model": "evil", "from": "llama3"}


async def test_a_page_of_another_origin_cannot_post_to_the_hub(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(), "n1")
    # What a page can send without a preflight: a text/plain POST.
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    for path, body in (
        ("/api/create", CREATE),
        ("/api/pull", {"model": "x"}),
        ("/jobs", {"model": "llama3"}),
    ):
        async with http.post(hub.url + path, data=str(body), headers=evil) as r:
            assert r.status == 403, path
            assert "origin 'http://evil.example' is not allowed" in await r.text()
    local = {"Origin": "http://localhost:3000"}
    async with http.post(
        hub.url + "/api/generate", json={"model": "llama3", "prompt": "x"}, headers=local
    ) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        await r.read()  # streamed: the header went out with the first line
    preflight = {**local, "Access-Control-Request-Method": "POST"}
    async with http.options(hub.url + "/api/chat", headers=preflight) as r:
        assert r.status == 204 and "POST" in r.headers["Access-Control-Allow-Methods"]


async def test_hub_origins_allow_more(fleet, http):
    hub = await fleet.hub(HUB_ORIGINS="https://chat.example.org,chrome-extension://*")
    for origin in ("https://chat.example.org", "chrome-extension://abcdef"):
        async with http.get(hub.url + "/api/tags", headers={"Origin": origin}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == origin
    async with http.get(hub.url + "/api/tags", headers={"Origin": "https://other.example.org"}) as r:
        assert r.status == 403


async def test_a_loopback_hub_answers_only_to_names_of_this_machine(fleet, http):
    hub = await fleet.hub()
    for host, expected in (("rebound.example.com", 403), (f"localhost:{hub.port}", 200), ("hub.local", 200)):
        async with http.get(hub.url + "/api/tags", headers={"Host": host}) as r:
            assert r.status == expected, host
    async with http.get(hub.url + "/api/version", headers={"Host": "rebound.example.com"}) as r:
        assert "is not this machine" in (await r.json())["error"]  # in the route's own dialect


async def test_no_heartbeat_from_a_browser(fleet, http):
    hub = await fleet.hub()
    beat = Heartbeat(node_id="page", port=9, models=["llama3"], load=Load(cpu=0.1, memory=0.1)).model_dump()
    for headers in (
        {"Origin": "http://localhost:3000"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    ):
        async with http.post(hub.url + "/nodes/heartbeat", json=beat, headers=headers) as r:
            assert r.status == 403 and "never from a browser" in await r.text()
    assert hub.registry.get("page") is None
