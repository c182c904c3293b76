"""The one client for every call the hub makes to a node's agent: jobs, quick questions to many nodes, health
probes and model transfers. It owns the app's one session, the marks every call carries (the cluster token,
the hub's hop id: hubd.routing.admission refuses a request that comes back), and the timeouts of each kind
of call. It dials only `NodeRecord.base_url`, the address admission accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

import aiohttp

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.shared.agent_contract import HOP_HEADER, KEEPALIVE_HEADER
from ollama_connector.shared.auth import bearer
from ollama_connector.shared.relay import describe

log = logging.getLogger(__name__)
QUICK = aiohttp.ClientTimeout(total=5.0)  # a question to many nodes at once, a health probe
CHANGE = aiohttp.ClientTimeout(total=60.0)  # a delete or a copy, on every node
TRANSFER = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=600.0)  # a pull's long silences


class NodeClient:
    def __init__(
        self, session: aiohttp.ClientSession, hop_id: str, cluster_token: str | None, request_timeout: float
    ) -> None:
        self.session = session
        self.marks = {HOP_HEADER: hop_id, **bearer(cluster_token)}
        self.request_timeout = request_timeout

    def headers(self, content_type: str = "application/json", **more: str) -> dict[str, str]:
        return {"Content-Type": content_type, **more, **self.marks}

    async def open_job(
        self, node: NodeRecord, path: str, payload: bytes, job_id: str, content_type: str
    ) -> aiohttp.ClientResponse:
        """Send a job; the caller reads (and closes) the answer. REQUEST_TIMEOUT bounds a silence, never a
        long answer: the agent sends keep-alives four times per timeout while its Ollama works."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(self.request_timeout, 10.0), sock_read=self.request_timeout
        )
        headers = self.headers(
            content_type,
            **{"X-Job-Id": job_id, KEEPALIVE_HEADER: f"{max(0.05, self.request_timeout / 4):g}"},
        )
        return await self.session.post(node.base_url + path, data=payload, headers=headers, timeout=timeout)

    async def ask(
        self,
        node: NodeRecord,
        method: str,
        path: str,
        payload: bytes | None = None,
        limit: aiohttp.ClientTimeout = QUICK,
    ) -> tuple[int | None, bytes]:
        """A short request: (status, body), or (None, why) when the node did not answer."""
        try:
            async with self.session.request(
                method, node.base_url + path, data=payload, headers=self.headers(), timeout=limit
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("node %s did not answer %s: %s", node.node_id, path, describe(exc))
            return None, describe(exc).encode()

    async def healthy(self, node: NodeRecord) -> tuple[bool, str]:
        """Whether the agent's /healthz says its engine answers, and what it said."""
        status, body = await self.ask(node, "GET", "/healthz")
        return status == 200, f"HTTP {status}" if status is not None else body.decode(errors="replace")

    def stream(
        self, node: NodeRecord, path: str, payload: bytes, extra: Mapping[str, str] | None = None
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A long streamed request (a pull, a create), read by the caller as it comes."""
        headers = self.headers(**dict(extra or {}))
        return self.session.post(node.base_url + path, data=payload, headers=headers, timeout=TRANSFER)
