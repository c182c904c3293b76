"""Async jobs in progress: each one's streamed lines so far, for the readers attached to it.

A run's lines are kept in memory only while it runs (its readers follow them live); every line also goes to
the journal, which serves them once the run has ended, and after a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ollama_connector.hubd.jobs.record import JobRecord

BATCH_BYTES = 256 * 1024  # what a reader of a run is handed at once


class AnswerTooLarge(Exception):
    pass


class DurableRun:
    def __init__(self, record: JobRecord, max_bytes: int) -> None:
        self.record = record
        self.lines: list[bytes] = []
        self.answer_from = 0  # a run taken over from another hub: its answer is the lines after the restart
        self.size = 0
        self.max_bytes = max_bytes
        self.task: asyncio.Task[Any] | None = None
        self._changed = asyncio.Event()

    def add(self, lines: list[bytes], force: bool = False) -> None:
        """New lines of the answer; AnswerTooLarge past MAX_ANSWER_BYTES (nothing of them is kept), unless
        `force` (the error line that ends it)."""
        size = self.size + sum(len(line) for line in lines)
        if size > self.max_bytes and not force:
            raise AnswerTooLarge(f"the answer passed MAX_ANSWER_BYTES={self.max_bytes}; the job was stopped")
        self.size = size
        self.lines.extend(lines)
        self._wake()

    def ended(self) -> None:
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, start: int) -> AsyncIterator[list[bytes]]:
        """Lines from `start` on, as they come, until the run ends, in batches of about BATCH_BYTES: a reader
        never holds a copy of the whole answer (a hundred readers of one long answer share its lines)."""
        at = start
        while True:
            changed = self._changed
            if at < len(self.lines):
                batch, size = [], 0
                while at < len(self.lines) and size < BATCH_BYTES:
                    batch.append(self.lines[at])
                    size += len(self.lines[at])
                    at += 1
                yield batch
                continue
            if self.record.finished:
                return
            await changed.wait()


class Runs:
    """The async jobs not yet ended, at most MAX_ASYNC_JOBS."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unfinished: dict[str, DurableRun] = {}


def assemble(lines: list[bytes]) -> dict[str, Any] | None:
    """The answer a non-streamed /api/generate would have given: the final chunk with the whole text."""
    text: list[str] = []
    thinking: list[str] = []
    final: dict[str, Any] | None = None
    for line in lines:
        try:
            chunk = json.loads(line)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        if isinstance(piece := chunk.get("response"), str):
            text.append(piece)
        if isinstance(piece := chunk.get("thinking"), str):
            thinking.append(piece)
        if chunk.get("done") is True or "error" in chunk:
            final = chunk
    if final is None:
        return None
    answer = {**final, "response": "".join(text)}
    if thinking:
        answer["thinking"] = "".join(thinking)
    return answer
