"""Capacity routing beyond slots: learned speeds, contexts, turns across callers, sticky sessions, GPUs."""

from __future__ import annotations

import asyncio
import logging

import pynvml
import pytest

from ollama_connector.hubd.routing.keys import PLACEMENT
from ollama_connector.noded.gpus import Nvml, default_context
from tests.conftest import report_cpu, wait_until


async def test_the_hub_learns_each_nodes_speed_per_model_and_shows_it(fleet, http):
    hub = await fleet.hub()
    await fleet.node(hub, await fleet.sim(tokens_per_second=200, models=["llama3=2GB"], load_delay=0.2), "n1")
    job = {"model": "llama3", "prompt": "x", "stream": False, "options": {"num_predict": 20}}
    for _ in range(3):
        async with http.post(hub.url + "/jobs", json=job) as r:
            assert r.status == 200
    async with http.get(hub.url + "/nodes/n1") as r:
        node = await r.json()
    speed = node["speeds"]["llama3:latest"]
    assert speed["jobs"] == 3 and 150 < speed["tokens_per_second"] < 250  # eval_count / eval_duration
    assert 0.08 < speed["job_seconds"] < 0.5  # 20 tokens at 200 a second, without the load
    assert 0.05 < node["load_seconds_per_gb"] < 0.2  # the first job's 0.2 s load_duration over 2 GB
    assert node["slots"] == {"used": 0, "total": 1}
    assert [m["name"] for m in node["models_loaded"]] == ["llama3:latest"]


async def test_a_job_without_num_ctx_runs_on_a_larger_loaded_context_instead_of_reloading(fleet, http):
    hub = await fleet.hub()
    sim = await fleet.sim()
    async with http.post(
        sim.url + "/api/generate", json={"model": "llama3", "options": {"num_ctx": 8192}}
    ) as r:
        assert r.status == 200  # loaded with a larger context than the node's default (4096)
    await fleet.node(hub, sim, "n1")
    async with http.post(hub.url + "/api/generate", json={"model": "llama3", "stream": False}) as r:
        assert r.status == 200
    assert sim.scheduler.stats.loads == 1 and sim.scheduler.runners["llama3:latest"].num_ctx == 8192
    # A job that asks for its own context gets it: Ollama reloads, as it must.
    body = {"model": "llama3", "stream": False, "options": {"num_ctx": 2048}}
    async with http.post(hub.url + "/api/generate", json=body) as r:
        assert r.status == 200
    assert sim.scheduler.stats.loads == 2 and sim.scheduler.runners["llama3:latest"].num_ctx == 2048


async def test_waiting_jobs_take_turns_across_api_keys(fleet, http):
    hub = await fleet.hub(API_KEYS="key-a-0123456789,key-b-0123456789", QUEUE_TIMEOUT_SECONDS="30")
    await fleet.node(hub, await fleet.sim(tokens_per_second=100), "only")
    job = {"model": "llama3", "prompt": "x", "options": {"num_predict": 10}}
    started: list[str] = []

    async def send(key: str, name: str) -> None:
        async with http.post(hub.url + "/jobs", json=job, headers={"Authorization": f"Bearer {key}"}) as r:
            started.append(name)  # headers come with the first token: when the job began to run
            await r.read()

    async with http.post(
        hub.url + "/jobs", json=job, headers={"Authorization": "Bearer key-a-0123456789"}
    ) as held:
        await held.content.readline()  # the one slot is taken
        tasks = []
        for key, name in (
            ("key-a-0123456789", "a1"),
            ("key-a-0123456789", "a2"),
            ("key-a-0123456789", "a3"),
            ("key-b-0123456789", "b1"),
        ):
            tasks.append(asyncio.create_task(send(key, name)))
            waiting = len(tasks)
            await wait_until(lambda n=waiting: hub.app[PLACEMENT].waiting == n, what=f"{name} to queue")
        await held.read()
    await asyncio.gather(*tasks)
    assert started == ["a1", "b1", "a2", "a3"]  # b1 came last but goes second: callers take turns


async def test_a_conversation_stays_on_its_node_while_that_node_has_a_free_slot(fleet, http):
    hub = await fleet.hub()
    for node_id in ("a", "b"):
        sim = await fleet.sim()
        async with http.post(sim.url + "/api/generate", json={"model": "llama3"}) as r:
            assert r.status == 200  # loaded on both: equal in every way that matters
        await report_cpu(http, hub, await fleet.node(hub, sim, node_id), 0.0)
    conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    served_by = []
    for turn in range(4):
        messages = (
            conversation + [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "?"}] * turn
        )
        body = {"model": "llama3", "messages": messages, "stream": False}
        async with http.post(hub.url + "/api/chat", json=body) as r:
            served_by.append(r.headers["X-Node-Id"])
        async with http.post(
            hub.url + "/api/chat", json={**body, "messages": [{"role": "user", "content": str(turn)}]}
        ) as r:
            assert r.status == 200  # another conversation each time, which the rotation sends elsewhere
    assert len(set(served_by)) == 1
    async with http.post(
        hub.url + "/api/chat",
        json={"model": "llama3", "messages": [], "stream": False},
        headers={"X-Session-Id": "s"},
    ) as r:
        first = r.headers["X-Node-Id"]
    for _ in range(3):
        async with http.post(
            hub.url + "/api/generate",
            json={"model": "llama3", "stream": False},
            headers={"X-Session-Id": "s"},
        ) as r:
            assert r.headers["X-Node-Id"] == first


def test_gpus_come_from_nvml_and_a_machine_without_a_driver_is_a_cpu_node(monkeypatch):
    class Memory:
        total, used = 24 * 1024**3, 3 * 1024**3

    class Rates:
        gpu = 37

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: index)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda handle: f"NVIDIA RTX {4090 + handle}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda handle: Memory())
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda handle: Rates())
    gpus = Nvml().read()
    assert [g.name for g in gpus] == ["NVIDIA RTX 4090", "NVIDIA RTX 4091"]
    assert gpus[0].memory_total == 24 * 1024**3 and gpus[0].utilization == pytest.approx(0.37)
    total = sum(g.memory_total for g in gpus)
    assert default_context(0, total) == 262144 and default_context(0, 24 * 1024**3) == 32768
    assert (
        default_context(0, 0) == 4096 and default_context(8192, total) == 8192
    )  # OLLAMA_CONTEXT_LENGTH wins

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert Nvml().read() == []


def test_a_gpu_that_fails_mid_way_is_reported_once_and_read_again_later(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ollama_connector.noded.gpus")
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)

    def lost() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lost)
    nvml = Nvml()
    assert nvml.read() == [] and nvml.read() == []
    assert caplog.text.count("reading the GPUs through NVML failed") == 1
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    assert nvml.read() == [] and "can be read through NVML again" in caplog.text
