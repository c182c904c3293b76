"""ollama-top's view of the hub: one poll is GET /nodes and GET /stats; prompts stream from POST /jobs; the
jobs view reads GET /jobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ollama_connector.shared.error_formats import Ollama, message_of
from ollama_connector.shared.modelnames import likely_embedding
from ollama_connector.shared.relay import LineReader, UpstreamBroken, describe

POLL_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
PROMPT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5.0)


class HubUnreachable(Exception):
    pass


@dataclass(frozen=True)
class FleetSnapshot:
    """The fleet as one poll saw it."""

    nodes: dict[str, dict[str, Any]]
    stats: dict[str, Any]
    taken_at: float = field(default_factory=time.time)

    def models_online(self) -> list[str]:
        return [name for name, where in self.stats.get("models", {}).items() if where.get("online")]

    def models_that_generate(self) -> list[str]:
        """What the prompt panel offers: online models, less those that only embed."""
        return [name for name in self.models_online() if not likely_embedding(name)]


@dataclass
class JobEvent:
    """One thing that happened to a prompt: text arrived, it finished, or it failed."""

    text: str = ""
    node_id: str | None = None
    final: dict[str, Any] | None = None
    error: str | None = None


class HubClient:
    """One hub, or several (comma-separated URLs, hubs of one fleet): each poll asks the hub that answered
    last, then the others in order, and stays with the first that answers."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.hubs = [url.strip() for url in base_url.split(",") if url.strip()] or [base_url]
        self.base_url = self.hubs[0]  # the hub that answered last: every other call goes there
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, path: str, hub: str | None = None) -> Any:
        async with self.session.get((hub or self.base_url) + path, timeout=POLL_TIMEOUT) as response:
            if response.status == 401:
                raise HubUnreachable("the hub wants an API key: --api-key or OLLAMA_HUB_API_KEY")
            if response.status == 404:
                raise HubUnreachable(await self._not_a_hub())
            if response.status != 200:
                raise HubUnreachable(f"the hub answered {path} with HTTP {response.status}")
            return await response.json()

    async def _not_a_hub(self) -> str:
        """Name what answered instead of a hub: most often, an Ollama server's own port."""
        try:
            async with self.session.get(self.base_url + "/api/version", timeout=POLL_TIMEOUT) as response:
                ollama = (await response.json()).get("version") if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            ollama = None
        if ollama:
            return f"this is an Ollama server ({ollama}), not a hub: point --hub at the hub's port"
        return "this is not an ollama-connector hub (it has no /nodes)"

    async def fetch(self) -> FleetSnapshot:
        failures: list[tuple[str, str]] = []
        for hub in [self.base_url, *(h for h in self.hubs if h != self.base_url)]:
            try:
                nodes, stats = await asyncio.gather(self._get("/nodes", hub), self._get("/stats", hub))
            except (aiohttp.ClientError, TimeoutError, ValueError, HubUnreachable) as exc:
                failures.append((hub, str(exc) if isinstance(exc, HubUnreachable) else plainly(exc)))
                continue
            self.base_url = hub
            return FleetSnapshot({node["node_id"]: node for node in nodes}, stats)
        if len(failures) == 1:
            raise HubUnreachable(failures[0][1])
        raise HubUnreachable("no hub answers: " + "; ".join(f"{hub}: {why}" for hub, why in failures))

    async def recent_jobs(self, limit: int) -> dict[str, Any]:
        """GET /jobs: the newest jobs, and the journal's state."""
        try:
            return await self._get(f"/jobs?limit={limit}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise HubUnreachable(plainly(exc)) from exc

    async def model_sizes(self) -> dict[str, int]:
        """GET /api/tags: each model's size on disk, by name."""
        try:
            tags = await self._get("/api/tags")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise HubUnreachable(plainly(exc)) from exc
        return {
            m["name"]: m.get("size", 0) for m in tags.get("models", []) if isinstance(m, dict) and "name" in m
        }

    async def pull(self, model: str, nodes: list[str]) -> AsyncIterator[dict[str, Any]]:
        """POST /api/pull on these nodes: each progress line as it comes (an `error` line ends it)."""
        try:
            async with self.session.post(
                self.base_url + "/api/pull", json={"model": model, "nodes": nodes}, timeout=PROMPT_TIMEOUT
            ) as response:
                if response.status != 200:
                    yield {"error": await refused(response)}
                    return
                reader = LineReader(response.content)
                while line := await reader.next_line():
                    if line.strip():
                        yield json.loads(line)
        except UpstreamBroken as exc:
            yield {"error": f"the stream broke: {exc}"}
        except (aiohttp.ClientError, TimeoutError) as exc:
            yield {"error": f"the hub is unreachable: {plainly(exc)}"}
        except ValueError as exc:
            yield {"error": f"the hub sent something that is not JSON: {exc}"}

    async def delete(self, model: str) -> str | None:
        """DELETE /api/delete on every node that has it: None when done, else what went wrong."""
        try:
            async with self.session.delete(
                self.base_url + "/api/delete", json={"model": model}, timeout=PROMPT_TIMEOUT
            ) as response:
                return None if response.status == 200 else await refused(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"the hub is unreachable: {plainly(exc)}"

    async def run_prompt(self, body: dict[str, Any]) -> AsyncIterator[JobEvent]:
        """Stream a job; errors come back as events carrying what the hub said."""
        try:
            async with self.session.post(
                self.base_url + "/jobs", json=body, timeout=PROMPT_TIMEOUT
            ) as response:
                node_id = response.headers.get("X-Node-Id")
                if response.status != 200:
                    yield JobEvent(node_id=node_id, error=await refused(response))
                    return
                # Whole lines however long they are (the last one carries the context array).
                reader = LineReader(response.content)
                while block := await reader.next_block():
                    for raw in block.splitlines():
                        if not raw.strip():
                            continue
                        chunk = json.loads(raw)
                        if (message := Ollama.message_in(chunk)) is not None:
                            yield JobEvent(node_id=node_id, error=message)
                            return
                        final = chunk if chunk.get("done") else None
                        yield JobEvent(text=chunk.get("response", ""), node_id=node_id, final=final)
        except UpstreamBroken as exc:
            yield JobEvent(error=f"the stream broke: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            yield JobEvent(error=f"the hub is unreachable: {plainly(exc)}")
        except ValueError as exc:
            yield JobEvent(error=f"the hub sent something that is not JSON: {exc}")


async def refused(response: aiohttp.ClientResponse) -> str:
    """What the hub said when it did not do what was asked: its status and message."""
    body = await response.read()
    return f"HTTP {response.status}: {message_of(body) or body.decode(errors='replace').strip()}"


def plainly(exc: BaseException) -> str:
    """What went wrong, in words rather than aiohttp's repr."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return f"{describe(exc)} (is the hub running there?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {POLL_TIMEOUT.total:g} s"
    if isinstance(exc, aiohttp.ContentTypeError | ValueError):
        return "the hub answered something that is not JSON"
    return describe(exc)
