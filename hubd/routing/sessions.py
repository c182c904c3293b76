"""Which conversation a job belongs to, for sticky routing (STICKY_SESSIONS).

A follow-up in a conversation is faster on the node that served the turn before: Ollama keeps that prompt's
KV cache in the slot. The key is, in order: an `X-Session-Id` header, OpenAI's `user` field, or a hash of
the conversation's first two messages (the same in every later turn). It is always hashed with the caller
and the model, so two callers never share one, and the hub keeps no text of it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from ollama_connector.hubd.guard.auth import caller_of

HEADER = "X-Session-Id"
MAX_KEY = 256  # characters of a header or `user` value that count


def session_of(request: web.Request, body: dict[str, Any], model: str) -> str | None:
    given = request.headers.get(HEADER) or body.get("user")
    if isinstance(given, str) and given.strip():
        seed: object = ["given", given.strip()[:MAX_KEY]]
    else:
        messages = body.get("messages") or body.get("input")  # `input`: the Responses API's conversation
        if not isinstance(messages, list) or not messages:
            return None
        seed = ["messages", messages[:2]]
    text = json.dumps([caller_of(request), model, seed], sort_keys=True)  # it was JSON: it encodes again
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
