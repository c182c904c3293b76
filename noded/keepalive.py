"""Keep-alives for the hub while Ollama is silent (see `shared.agent_contract`).

Nothing is sent while Ollama answers within ACCEPT_AFTER: the answer then goes back plain, as it would to
any caller, so a quick job costs no more than a timer (framing every job cost the hub and the agent about
20 % more CPU per tiny job in bench/). A job still silent by then is accepted in the framed form, with a
bare newline every interval until Ollama's answer is in. Accepting early keeps the window in which the hub
cannot tell a job accepted from one never started down to a second.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollama_connector.shared.agent_contract import FRAMED_HEADER, KEEPALIVE

ACCEPT_AFTER = 1.0


class KeepAlive:
    def __init__(self, request: web.Request, every: float) -> None:
        self.response: web.StreamResponse | None = None  # made when the job is accepted framed
        self._request = request
        self._every = every
        self._preparing: asyncio.Future[object] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(min(every, ACCEPT_AFTER), self._start)

    def _start(self) -> None:
        self.response = web.StreamResponse(
            status=200, headers={FRAMED_HEADER: "1", "Content-Type": "application/octet-stream"}
        )
        self._preparing = asyncio.ensure_future(self.response.prepare(self._request))
        self._beats = asyncio.ensure_future(self._beat())
        self._beats.add_done_callback(_retrieve)

    async def _beat(self) -> None:
        await asyncio.shield(self._preparing)  # type: ignore[arg-type]
        while True:
            await asyncio.sleep(self._every)
            await self.response.write(KEEPALIVE)  # type: ignore[union-attr]

    async def stop(self) -> bool:
        """Stop the keep-alives; True when the job was accepted framed, so the head line must follow.

        ConnectionResetError when the hub has hung up meanwhile.
        """
        self.cancel()
        if self._preparing is None:
            return False
        await self._preparing
        return True

    def cancel(self) -> None:
        self._timer.cancel()
        if self._beats is not None:
            # A write the task is waiting to drain is already in the transport's buffer: nothing is cut.
            self._beats.cancel()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A keep-alive that failed means the hub hung up; the handler learns it by being cancelled."""
    if not task.cancelled():
        task.exception()
