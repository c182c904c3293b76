"""Model transfers on nodes (pulls, creates) that outlive the request that asked for them.

A transfer runs as a task of its own and hands each progress line, with its `node_id`, to whoever listens; a
caller who hangs up stops listening, and the transfer goes on. A pull of a model on a node that is already
under way is joined rather than started again. Transfers in progress show in /stats.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ollama_connector.hubd.routing.node import NodeRecord
from ollama_connector.hubd.routing.node_client import NodeClient
from ollama_connector.shared.error_formats import Ollama, message_of
from ollama_connector.shared.lifecycle import said_if_crashed
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.relay import LineReader, UpstreamBroken, describe

Listener = asyncio.Queue  # of (Transfer, line or None at its end)
ROOM_MARGIN = 1_000_000_000  # bytes a pull must leave free on the node's disk


def no_room(size: int, free: int) -> str:
    return (
        f"no room: the model takes {size / 1e9:.1f} GB, and {free / 1e9:.1f} GB are free for Ollama's models"
    )


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    status: int | None = None

    @classmethod
    def of(cls, status: int | None, body: bytes) -> Outcome:
        if status == 200:
            return cls(True, status=200)
        text = message_of(body) or body.decode(errors="replace").strip()[:300] or f"HTTP {status}"
        return cls(False, text, status)

    def view(self) -> dict[str, Any]:
        # `reason`, not `error`: Ollama's clients stop at a line with an `error`, and one node's failure must
        # not hide how the others end (the summary line carries the error).
        return {"status": "success"} if self.ok else {"status": "failed", "reason": self.error}


class Transfer:
    def __init__(self, node_id: str, model: str, path: str) -> None:
        self.node_id, self.model, self.path = node_id, model, path
        self.status = "starting"
        self.completed = self.total = 0
        self.layers: dict[str, int] = {}  # a pull's layers and their sizes, as Ollama announces them
        self.learned: Callable[[], None] | None = None  # tells the registry the model is there now
        self.callers: set[str] = set()  # who asked for it ("": the hub itself, for FLEET_MODELS)
        self.task: asyncio.Task[None] | None = None
        self._outcome: Outcome | None = None
        self._done = asyncio.Event()
        self._listeners: set[Listener] = set()

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    @property
    def result(self) -> Outcome | None:
        """How it ended; None while it runs."""
        return self._outcome

    def listen(self, queue: Listener) -> None:
        self._listeners.add(queue)

    def unlisten(self, queue: Listener) -> None:
        self._listeners.discard(queue)

    async def outcome(self) -> Outcome:
        await self._done.wait()
        assert self._outcome is not None
        return self._outcome

    def end_line(self) -> bytes:
        """How it ended on its node: not an `error` line, so that clients read on to the other nodes."""
        assert self._outcome is not None
        return (
            json.dumps({**self._outcome.view(), "node_id": self.node_id, "model": self.model}).encode()
            + b"\n"
        )

    def view(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "model": self.model,
            "kind": self.path.removeprefix("/api/"),
            "status": self.status,
            "completed": self.completed,
            "total": self.total,
            "percent": round(100 * self.completed / self.total, 1) if self.total else None,
        }

    def _emit(self, line: bytes | None) -> None:
        for queue in self._listeners:
            queue.put_nowait((self, line))

    def _end(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self.status = "success" if outcome.ok else "failed"
            self._done.set()
            self._emit(None)

    async def run(self, client: NodeClient, node: NodeRecord, payload: bytes) -> None:
        try:
            await self._run(client, node, payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._end(Outcome(False, describe(exc)))
        finally:
            self._end(Outcome(False, "stopped: the hub is shutting down"))  # a no-op when it has ended

    async def _run(self, client: NodeClient, node: NodeRecord, payload: bytes) -> None:
        # A model the fleet has never seen has no known size until Ollama reads its manifest: its layers'
        # sizes come in the first progress lines, before the bytes, and the pull stops there if they do not
        # fit.
        free = node.beat.disk_free_bytes
        watch_room = (
            self.path == "/api/pull" and free is not None and canonical(self.model) not in node.model_keys
        )
        async with client.stream(node, self.path, payload) as response:
            if response.status != 200:
                self._end(Outcome.of(response.status, await response.read()))
                return
            reader, succeeded = LineReader(response.content), False
            try:
                while line := await reader.next_line():
                    progress = _object(line)
                    if progress is None:
                        continue
                    if (message := Ollama.message_in(progress)) is not None:
                        self._end(Outcome(False, message))
                        return
                    self._note(progress)
                    if progress.get("status") == "success" and self.learned is not None:
                        self.learned()  # the registry knows before anyone reads this success
                    if watch_room and free is not None and sum(self.layers.values()) + ROOM_MARGIN > free:
                        self._end(Outcome(False, no_room(sum(self.layers.values()), free)))
                        return  # leaving the stream cancels the pull on the node
                    succeeded = succeeded or progress.get("status") == "success"
                    self._emit(json.dumps({**progress, "node_id": self.node_id}).encode() + b"\n")
            except UpstreamBroken as exc:
                self._end(Outcome(False, f"the connection failed: {exc}"))
                return
        self._end(
            Outcome(True, status=200) if succeeded else Outcome(False, "the stream ended before success")
        )

    def _note(self, progress: dict[str, Any]) -> None:
        if isinstance(status := progress.get("status"), str):
            self.status = status[:200]
        total, completed = progress.get("total"), progress.get("completed")
        if isinstance(total, int) and isinstance(completed, int) and total > 0:
            self.total, self.completed = total, min(completed, total)
            if isinstance(layer := progress.get("digest"), str) and len(self.layers) < 1000:
                self.layers[layer[:100]] = total


def _object(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Transfers:
    """Transfers in progress: pulls by (node, model), so that a second caller joins the first's."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, ...], Transfer] = {}

    def start(
        self,
        client: NodeClient,
        node: NodeRecord,
        path: str,
        model: str,
        payload: bytes,
        learned: Callable[[], None] | None = None,
    ) -> Transfer:
        node_id = node.node_id
        key = (node_id, path, canonical(model)) if path == "/api/pull" else (node_id, path, uuid.uuid4().hex)
        if (running := self._running.get(key)) is not None and not running.finished:
            return running
        transfer = self._running[key] = Transfer(node_id, model, path)
        transfer.learned = learned
        name = f"{path} of {model} on {node_id}"
        transfer.task = asyncio.create_task(transfer.run(client, node, payload), name=name)
        transfer.task.add_done_callback(said_if_crashed)
        transfer.task.add_done_callback(lambda _: self._running.pop(key, None))
        return transfer

    def refused(self, node_id: str, path: str, model: str, reason: str) -> Transfer:
        """A transfer that does not start (no room on the node), ended at once."""
        transfer = Transfer(node_id, model, path)
        transfer._end(Outcome(False, reason))
        return transfer

    def view(self) -> list[dict[str, Any]]:
        return [t.view() for t in self._running.values() if not t.finished]

    def held(self, caller: str) -> int:
        """Transfers in progress that `caller` asked for."""
        return sum(caller in t.callers for t in self._running.values() if not t.finished)

    def __len__(self) -> int:
        return len(self._running)

    async def close(self) -> None:
        tasks = [t.task for t in self._running.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
