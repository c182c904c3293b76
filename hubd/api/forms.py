"""Form bodies (multipart/form-data): an audio transcription's, read for the fields the hub routes by.

The hub has read the body already (hubd.guard.limits), so aiohttp's multipart reader runs over those bytes:
the form is relayed to the node as it came, and the file in it is skipped, never copied.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from multidict import CIMultiDict

from ollama_connector.shared.bodies import BadRequest

MAX_PARTS = 64  # OpenAI's transcription form has a dozen fields
MAX_FIELD = 64 * 1024  # a text field longer than this (a prompt) is relayed, not read


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)  # text fields
    files: set[str] = field(default_factory=set)  # names of the file parts, which are not read


async def read_form(raw: bytes, content_type: str) -> Form:
    """The form's text fields and the names of its files. BadRequest, in Ollama's words, for anything else."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("failed to parse multipart form: the body must be multipart/form-data")
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), len(raw) + 1, loop=loop)  # one feed, never paused
    stream.feed_data(raw)
    stream.feed_eof()
    form = Form()
    try:
        reader = aiohttp.MultipartReader(CIMultiDict({"Content-Type": content_type}), stream)
        for _ in range(MAX_PARTS + 1):
            part = await reader.next()
            if part is None:
                return form
            if not isinstance(part, aiohttp.BodyPartReader):
                raise BadRequest("failed to parse multipart form: nested multipart parts are not accepted")
            if part.filename is not None:
                form.files.add(part.name or "")
            elif part.name and (value := await part.read()) and len(value) <= MAX_FIELD:
                form.fields[part.name] = value.decode(errors="replace")
            await part.release()
    except (ValueError, AssertionError, RuntimeError, aiohttp.ClientError) as exc:
        raise BadRequest(f"failed to parse multipart form: {exc or type(exc).__name__}") from None
    raise BadRequest(f"failed to parse multipart form: more than {MAX_PARTS} parts")
