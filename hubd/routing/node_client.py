"""The one client for every call the hub makes to a node's agent: jobs, quick questions to many nodes, health
probes and model transfers. It owns the app's one session, the marks every call carries (the node's own
token or the cluster token, the hub's hop id: hubd.routing.admission refuses a request that comes back, and a
challenge the agent must answer), and the timeouts of each kind of call. It dials only `NodeRecord.base_url`,
the address admission accepted, and drops any answer the node's agent did not sign.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from pydantic import SecretStr

from ollama_connector.hubd.guard.node_tokens import NodeTokens
from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.shared.agent_contract import (
    CHALLENGE_HEADER,
    HOP_HEADER,
    KEEPALIVE_HEADER,
    MODEL_HEADER,
    PROOF_HEADER,
    proves,
)
from ollama_connector.shared.modelnames import display
from ollama_connector.shared.relay import describe

log = logging.getLogger(__name__)
QUICK = aiohttp.ClientTimeout(total=5.0)  # a question to many nodes at once, a health probe
CHANGE = aiohttp.ClientTimeout(total=60.0)  # a delete or a copy, on every node
TRANSFER = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=600.0)  # a pull's long silences


class Unproven(aiohttp.ClientError):
    """What answered a call to a node did not prove it is that node's agent (shared.agent_contract)."""

    def __init__(self, node: NodeRecord, status: int) -> None:
        super().__init__(
            f"what answers at {node.base_url} (HTTP {status}) did not prove it is node {node.node_id}'s agent"
            " (another service on its port, or an agent with another credential); its answer was dropped"
        )


class NodeClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        hop_id: str,
        cluster_token: SecretStr | None,
        node_tokens: NodeTokens,
        request_timeout: float,
    ) -> None:
        self.session = session
        self.hop_id = hop_id
        self.cluster_token = cluster_token.get_secret_value() if cluster_token else None
        self.node_tokens = node_tokens
        self.request_timeout = request_timeout
        self.unproven: set[str] = set()  # nodes whose answers lack the proof, said once

    def credential(self, node: NodeRecord) -> str | None:
        """What the hub presents to a node: its own token when it has one, else CLUSTER_TOKEN."""
        if node.credential:
            return self.node_tokens.token_for(node.credential)
        return self.cluster_token

    def headers(
        self, node: NodeRecord, challenge: str, content_type: str = "application/json", **more: str
    ) -> dict[str, str]:
        token = self.credential(node)
        bearer = {"Authorization": f"Bearer {token}"} if token else {}
        return {
            "Content-Type": content_type,
            **more,
            HOP_HEADER: self.hop_id,
            CHALLENGE_HEADER: challenge,
            **bearer,
        }

    def check(self, node: NodeRecord, challenge: str, response: aiohttp.ClientResponse) -> None:
        """Unproven (the answer closed unread) unless the node's agent signed it."""
        if proves(self.credential(node), challenge, response.headers.get(PROOF_HEADER)):
            self.unproven.discard(node.node_id)
            return
        response.close()
        unproven = Unproven(node, response.status)
        if node.node_id not in self.unproven and len(self.unproven) < 10_000:  # said once until it proves
            self.unproven.add(node.node_id)
            log.warning("node %s: %s", node.node_id, unproven)
        raise unproven

    async def open_job(
        self, node: NodeRecord, path: str, payload: bytes, job_id: str, content_type: str, model: str
    ) -> aiohttp.ClientResponse:
        """Send a job; the caller reads (and closes) the answer. REQUEST_TIMEOUT bounds a silence, never a
        long answer: the agent sends keep-alives four times per timeout while its Ollama works."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(self.request_timeout, 10.0), sock_read=self.request_timeout
        )
        headers = self.headers(
            node,
            job_id,
            content_type,
            **{
                "X-Job-Id": job_id,
                KEEPALIVE_HEADER: f"{max(0.05, self.request_timeout / 4):g}",
                MODEL_HEADER: model,
            },
        )
        response = await self.session.post(
            node.base_url + path, data=payload, headers=headers, timeout=timeout
        )
        self.check(node, job_id, response)
        return response

    async def ask(
        self,
        node: NodeRecord,
        method: str,
        path: str,
        payload: bytes | None = None,
        limit: aiohttp.ClientTimeout = QUICK,
    ) -> tuple[int | None, bytes]:
        """A short request: (status, body), or (None, why) when the node did not answer."""
        challenge = secrets.token_hex(16)
        headers = self.headers(node, challenge)
        try:
            async with self.session.request(
                method, node.base_url + path, data=payload, headers=headers, timeout=limit
            ) as response:
                self.check(node, challenge, response)
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("node %s did not answer %s: %s", node.node_id, path, describe(exc))
            return None, describe(exc).encode()

    async def preload(self, node: NodeRecord, key: str, num_ctx: int | None) -> bool:
        """Load a model there ahead of need: an empty generate, as Ollama's clients preload one."""
        body: dict = {"model": display(key), **({"options": {"num_ctx": num_ctx}} if num_ctx else {})}
        status, _ = await self.ask(node, "POST", "/api/generate", json.dumps(body).encode(), TRANSFER)
        return status == 200

    async def healthy(self, node: NodeRecord) -> tuple[bool, str]:
        """Whether the agent's /healthz says its engine answers, and what it said."""
        status, body = await self.ask(node, "GET", "/healthz")
        return status == 200, f"HTTP {status}" if status is not None else body.decode(errors="replace")

    @asynccontextmanager
    async def stream(
        self, node: NodeRecord, path: str, payload: bytes, extra: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long streamed request (a pull, a create), read by the caller as it comes."""
        challenge = secrets.token_hex(16)
        headers = self.headers(node, challenge, **dict(extra or {}))
        async with self.session.post(
            node.base_url + path, data=payload, headers=headers, timeout=TRANSFER
        ) as answer:
            self.check(node, challenge, answer)
            yield answer
