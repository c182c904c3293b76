"""Keys with roles: what a user, an admin, no key and the nodes' token may do on each route, in the route's
own error dialect; named keys added, limited to models and revoked while the hub runs (file change and
SIGHUP)."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Static

from ollama_connector.tui.app import OllamaTop
from tests.conftest import wait_until
from tests.test_metrics import scrape, value

USER, OTHER, ADMIN, TOKEN = "user-key-0123456789", "other-key-0123456789", "admin-key-0123456789", "t" * 32
GENERATE = {"model": "llama3", "prompt": "x", "stream": False}
CHAT = {"model": "llama3", "messages": [{"role": "user", "content": "x"}]}
MESSAGES = {"model": "llama3", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}


def ollama_error(body: dict) -> str:
    return body["error"]


def openai_error(body: dict) -> str:
    return body["error"]["message"]


def anthropic_error(body: dict) -> str:
    assert body["type"] == "error"
    return body["error"]["message"]


def seed_error(body: dict) -> str:
    return body["detail"]


# Each route, its body, the dialect of its errors, and whether a user may call it.
ROUTES = [
    ("POST", "/api/generate", GENERATE, ollama_error, True),
    ("POST", "/jobs", GENERATE, seed_error, True),
    ("POST", "/v1/chat/completions", CHAT, openai_error, True),
    ("POST", "/v1/messages", MESSAGES, anthropic_error, True),
    ("GET", "/api/tags", None, ollama_error, True),
    ("GET", "/nodes", None, seed_error, True),
    ("GET", "/jobs", None, seed_error, True),
    ("POST", "/api/pull", {"model": "llama3", "stream": False}, ollama_error, False),
    ("DELETE", "/api/delete", {"model": "absent"}, ollama_error, False),
    ("POST", "/api/copy", {"source": "absent", "destination": "b"}, ollama_error, False),
    ("POST", "/api/create", {"model": "b", "from": "absent"}, ollama_error, False),
    ("POST", "/api/push", {"model": "llama3"}, ollama_error, False),
    ("POST", "/api/blobs/sha256:" + "0" * 64, None, ollama_error, False),
    ("GET", "/metrics", None, seed_error, False),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "path", "body", "error_of", "users_may"), ROUTES)
async def test_each_route_for_no_key_a_user_an_admin_and_the_nodes_token(
    fleet, http, method, path, body, error_of, users_may
):
    hub = await fleet.hub(API_KEYS=f"{USER},{OTHER}", ADMIN_KEYS=ADMIN, CLUSTER_TOKEN=TOKEN)
    await fleet.node(hub, await fleet.sim(), "n1", CLUSTER_TOKEN=TOKEN)
    for who in (None, TOKEN, "wrong-key-0123456789"):
        async with http.request(method, hub.url + path, json=body, headers=bearer(who) if who else {}) as r:
            assert r.status == 401, (who, await r.text())
            assert "API key" in error_of(await r.json())
    async with http.request(method, hub.url + path, json=body, headers=bearer(USER)) as r:
        if users_may:
            assert r.status == 200, await r.text()
        else:
            assert r.status == 403 and "needs an admin key" in error_of(await r.json())
    async with http.request(method, hub.url + path, json=body, headers=bearer(ADMIN)) as r:
        assert r.status not in (401, 403), await r.text()


async def test_the_nodes_token_is_no_callers_key(fleet):
    with pytest.raises(ValueError, match="CLUSTER_TOKEN is for nodes"):
        await fleet.hub(API_KEYS=TOKEN, CLUSTER_TOKEN=TOKEN)


def keys(path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command line: `ollama-hubd keys ...`."""
    program = str(Path(sys.executable).with_name("ollama-hubd"))
    return subprocess.run([program, "keys", "--file", str(path), *args], capture_output=True, text=True)


async def status(http, url: str, key: str, path: str = "/api/tags") -> int:
    async with http.get(url + path, headers=bearer(key)) as r:
        return r.status


async def test_named_keys_are_added_limited_to_models_and_revoked_while_the_hub_runs(
    fleet, http, tmp_path, caplog
):
    path = tmp_path / "keys.toml"
    added = keys(path, "add", "root", "--admin")
    root = added.stdout.strip().splitlines()[-1]  # the secret: the last line, shown once
    hub = await fleet.hub(KEYS_FILE=str(path))
    await fleet.node(hub, await fleet.sim(models=["llama3", "mistral"]), "n1")
    assert await status(http, hub.url, root) == 200
    async with http.get(hub.url + "/api/tags") as r:
        assert r.status == 401  # a key in the file: the hub is no longer open

    made = keys(path, "add", "ci-bot", "--models", "llama3*")
    assert made.returncode == 0, made.stderr
    bot = made.stdout.strip().splitlines()[-1]
    assert bot not in path.read_text() and root not in path.read_text()  # the file keeps digests only
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    await wait_until(lambda: _is(http, hub.url, bot, 200), what="the new key to be taken (within 5 s)")
    async with http.get(hub.url + "/api/tags", headers=bearer(bot)) as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["llama3:latest"]
    async with http.post(hub.url + "/api/chat", json={**CHAT, "model": "mistral"}, headers=bearer(bot)) as r:
        assert r.status == 403 and "may not use model 'mistral'" in (await r.json())["error"]
    async with http.post(hub.url + "/v1/chat/completions", json=CHAT, headers=bearer(bot)) as r:
        assert r.status == 200
    async with http.get(hub.url + "/jobs", headers=bearer(root)) as r:
        assert [j["key"] for j in (await r.json())["jobs"]] == ["ci-bot"]
    listed = keys(path, "list").stdout
    assert "ci-bot" in listed and "user; models llama3*" in listed and bot not in listed

    assert keys(path, "revoke", "ci-bot").returncode == 0
    await wait_until(lambda: _is(http, hub.url, bot, 401), what="the revoked key to be refused")
    path.write_text("[keys.broken\n")  # a broken file: said, and the keys in force stay
    await wait_until(lambda: "keys file not loaded" in caplog.text, what="the broken file to be noticed")
    assert await status(http, hub.url, root) == 200


async def _is(http, url: str, key: str, expected: int) -> bool:
    return await status(http, url, key) == expected


async def test_sighup_reads_the_keys_file_at_once(processes, http, tmp_path):
    path = tmp_path / "keys.toml"
    root = keys(path, "add", "root", "--admin").stdout.strip().splitlines()[-1]
    hub, proc = processes.hub(KEYS_FILE=str(path))
    assert await status(http, hub, root) == 200
    user = keys(path, "add", "alice").stdout.strip().splitlines()[-1]
    proc.send_signal(signal.SIGHUP)
    await wait_until(lambda: _is(http, hub, user, 200), within=1.5, what="SIGHUP to load the new key")


async def test_a_keys_file_broken_at_start_lets_no_caller_in(fleet, http, tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text("this is not TOML")
    hub = await fleet.hub(KEYS_FILE=str(path))
    async with http.get(hub.url + "/api/tags") as r:
        assert r.status == 401  # closed, not open: the file meant to hold keys


def secret(made: subprocess.CompletedProcess) -> str:
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


async def test_a_keys_own_limits_answer_429_saying_which(fleet, http, tmp_path):
    path = tmp_path / "keys.toml"
    slow = secret(keys(path, "add", "slow", "--rpm", "2"))
    single = secret(keys(path, "add", "single", "--concurrency", "1"))
    budget = secret(keys(path, "add", "budget", "--tokens-per-day", "60"))
    hub = await fleet.hub(KEYS_FILE=str(path))
    await fleet.node(hub, await fleet.sim(tokens_per_second=20), "n1")

    assert [await status(http, hub.url, slow) for _ in range(3)] == [200, 200, 429]
    async with http.get(hub.url + "/api/tags", headers=bearer(slow)) as r:
        assert int(r.headers["Retry-After"]) >= 1 and "2 requests a minute" in (await r.json())["error"]
    assert await status(http, hub.url, single) == 200  # another key's requests are its own

    long_job = {**CHAT, "stream": True, "max_tokens": 1000}
    async with http.post(hub.url + "/v1/chat/completions", json=long_job, headers=bearer(single)) as running:
        assert running.status == 200 and await running.content.readline()  # under way
        async with http.post(hub.url + "/v1/chat/completions", json=CHAT, headers=bearer(single)) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
            assert "1 jobs at once" in (await r.json())["error"]["message"]  # OpenAI's dialect

    # 24 tokens out and 7 in a job (the prompt as the template renders it): two fit under 60 a day (the
    # second starts at 31), the third (at 62) does not.
    outcomes = []
    for _ in range(3):
        async with http.post(hub.url + "/jobs", json=GENERATE, headers=bearer(budget)) as r:
            outcomes.append((r.status, (await r.json()).get("detail")))
    assert [s for s, _ in outcomes] == [200, 200, 429]
    assert "60 tokens a day" in outcomes[2][1]


async def test_usage_by_key_matches_the_jobs_run(fleet, http, tmp_path):
    path = tmp_path / "keys.toml"
    alice = secret(keys(path, "add", "alice"))
    root = secret(keys(path, "add", "root", "--admin"))
    hub = await fleet.hub(KEYS_FILE=str(path))
    await fleet.node(hub, await fleet.sim(models=["llama3", "mistral"]), "n1")
    for key, model in ((alice, "llama3"), (alice, "llama3"), (alice, "mistral"), (root, "llama3")):
        async with http.post(hub.url + "/jobs", json={**GENERATE, "model": model}, headers=bearer(key)) as r:
            assert r.status == 200
    async with http.get(hub.url + "/usage", headers=bearer(alice)) as r:
        assert r.status == 403 and "usage by key needs an admin key" in (await r.json())["detail"]
    async with http.get(hub.url + "/usage", headers=bearer(root)) as r:
        rows = {(row["key"], row["model"]): row for row in (await r.json())["usage"]}
    assert set(rows) == {("alice", "llama3"), ("alice", "mistral"), ("root", "llama3")}
    assert rows["alice", "llama3"] | {"generation_seconds": 0} == {
        **{"key": "alice", "model": "llama3", "jobs": 2, "prompt_tokens": 14, "output_tokens": 48},
        **{"generation_seconds": 0, "failures": 0},
    }
    async with http.get(
        hub.url + "/usage", params={"key": "root", "since": "2020-01-01T00:00:00Z"}, headers=bearer(root)
    ) as r:
        assert [(row["key"], row["jobs"]) for row in (await r.json())["usage"]] == [("root", 1)]
    samples = await scrape(http, hub.url, bearer(root))
    assert value(samples, "ollama_hub_key_tokens_total", key="alice", model="llama3:latest") == 62

    app = OllamaTop(hub.url, interval=60, api_key=root)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("J")
        summary = app.screen.query_one("#jobs-summary", Static)
        await wait_until(lambda: "by key" in str(summary.content), what="the usage line")
        assert "alice 93 tokens · root 31 tokens" in str(summary.content)  # 7 in and 24 out a job


async def test_wrong_keys_are_said_once_a_burst_and_slowed_per_address(fleet, http, caplog):
    hub = await fleet.hub(API_KEYS=USER)
    answers = []
    for n in range(12):
        async with http.get(hub.url + "/api/tags", headers=bearer(f"guess-{n:04d}-0123456789")) as r:
            answers.append(r.status)
    assert answers == [401] * 10 + [429] * 2, str(answers)
    async with http.get(hub.url + "/api/tags", headers=bearer(USER)) as r:  # the right key waits too
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert "too many wrong API keys" in (await r.json())["error"]
    said = [rec for rec in caplog.records if "wrong API key from" in rec.getMessage()]
    assert len(said) == 1 and USER not in caplog.text and "guess-" not in caplog.text


async def test_the_audit_trail_keeps_who_did_what_where(fleet, http, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hubd.audit")
    path = tmp_path / "keys.toml"
    ops = secret(keys(path, "add", "ops", "--admin"))
    alice = secret(keys(path, "add", "alice"))
    hub = await fleet.hub(KEYS_FILE=str(path))
    await fleet.node(hub, await fleet.sim(models=["llama3"]), "n1")
    async with http.delete(hub.url + "/api/delete", json={"model": "llama3"}, headers=bearer(ops)) as r:
        assert r.status == 200
    async with http.post(hub.url + "/api/pull", json={"model": "x"}, headers=bearer(alice)) as r:
        assert r.status == 403
    keys(path, "revoke", "alice")
    await wait_until(lambda: "revoked alice" in caplog.text, what="the revocation to be noticed")

    async def trail() -> list[tuple[str, str, str]]:
        async with http.get(hub.url + "/audit", headers=bearer(ops)) as r:
            return [(e["who"], e["what"], e["where"]) for e in (await r.json())["audit"]]

    await wait_until(lambda: _has(trail, 3), what="three entries in the journal")
    entries = await trail()
    assert entries[2] == ("ops", "delete llama3", "on n1")
    assert entries[1][:2] == ("alice", "refused POST /api/pull") and entries[1][2] == "127.0.0.1"
    assert entries[0][:2] == ("keys file", "revoked alice") and str(path) in entries[0][2]


async def _has(trail, count: int) -> bool:
    return len(await trail()) >= count


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"API_KEYS": " , "}, "holds commas and spaces but no key"),
        ({"ADMIN_KEYS": "weakling"}, "is shorter than 16"),
        ({"CLUSTER_TOKEN": "t0k-t0k"}, "is shorter than 16"),
    ],
)
async def test_weak_or_empty_keys_are_refused_at_start_never_shown(fleet, env, said):
    with pytest.raises(ValueError) as refused:
        await fleet.hub(**env)
    ((name, value),) = env.items()
    assert f"{name} (its value not shown): Value error, {said}" in str(refused.value)
    assert value.strip(" ,") not in str(refused.value) or not value.strip(" ,")


async def test_an_environment_keys_id_is_keyed_with_the_hubs_own_secret(fleet, http, tmp_path):
    env = {"API_KEYS": USER, "KEYS_FILE": str(tmp_path / "keys.toml")}
    ids = []
    for _ in range(2):  # the same hub state twice: a restart
        hub = await fleet.hub(**env)
        await fleet.node(hub, await fleet.sim(), f"n{len(ids)}")
        async with http.post(hub.url + "/jobs", json=GENERATE, headers=bearer(USER)) as r:
            assert r.status == 200
        async with http.get(hub.url + "/jobs", headers=bearer(USER)) as r:
            ids.append((await r.json())["jobs"][0]["caller"])
        await hub.stop()
    plain = "env:" + hashlib.sha256(USER.encode()).hexdigest()[:16]
    assert ids[0] == ids[1] != plain  # stable over a restart, and no digest of the key alone
    secret = tmp_path / "callers.secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600" and USER not in secret.read_text()


async def test_even_an_admin_pulls_only_from_allowed_registries(fleet, http):
    hub = await fleet.hub(ADMIN_KEYS=ADMIN)
    await fleet.node(hub, await fleet.sim(), "n1")
    for body, said in (
        ({"model": "evil.example.com/x/y", "stream": False}, "pulls from evil.example.com are not allowed"),
        ({"model": "llama3", "insecure": True, "stream": False}, "ALLOW_INSECURE_PULLS=1"),
    ):
        async with http.post(hub.url + "/api/pull", json=body, headers=bearer(ADMIN)) as r:
            assert r.status == 403 and said in (await r.json())["error"]
    more = await fleet.hub(ADMIN_KEYS=ADMIN, ALLOWED_REGISTRIES="registry.ollama.ai,hf.co")
    await fleet.node(more, await fleet.sim(), "n2")
    hf = {"model": "hf.co/bartowski/model-GGUF:Q4_K_M", "stream": False}
    async with http.post(more.url + "/api/pull", json=hf, headers=bearer(ADMIN)) as r:
        assert r.status == 200, await r.text()
