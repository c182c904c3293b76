"""Request bodies: read as a JSON object and validated, or a BadRequest that says what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ollama_connector.shared.wire import depth

M = TypeVar("M", bound=BaseModel)


MAX_JSON_DEPTH = 64  # far past any real request (a JSON schema in `format` included), far below the parser's
MAX_JSON_KEYS = 50_000  # fields in a body, all objects together: a 3,000-message chat has about 10,000


async def _read_at_most(request: web.Request, max_bytes: int) -> bytes:
    """The body, read no further than `max_bytes` (a chunked body says no length): 413 past it."""
    parts, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise BadRequest(f"request body is larger than {max_bytes} bytes", status=413)
        parts.append(chunk)
    return b"".join(parts)


class BadRequest(Exception):
    """The caller sent something unusable; the message says what."""

    status = 400

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# A surrogate escape (\ud800-\udfff) in JSON text: a pair decodes to one character, a lone one stays a
# surrogate that no UTF-8 can carry. Only bodies holding one are searched.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(value: Any) -> str | None:
    """Where a decoded JSON value holds a lone surrogate (`messages.0.content`), if it does."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str) and SURROGATE.search(item):
            return path or "body"
        if isinstance(item, dict):
            for key, child in item.items():
                if SURROGATE.search(key):
                    return f"{path}.{ascii(key)[1:-1]}".lstrip(".") + " (a name)"
                stack.append((child, f"{path}.{key}".lstrip(".")))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{n}".lstrip(".")) for n, child in enumerate(item))
    return None


def replace_lone_surrogates(value: Any) -> Any:
    """As Go's JSON decoder does (and so Ollama): each lone surrogate becomes U+FFFD."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_lone_surrogates(v) for v in value]
    return value


async def read_json_object(
    request: web.Request, max_bytes: int | None = None, lone_surrogates: str = "refuse"
) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest naming what is wrong with it.

    An oversize body raises aiohttp's HTTPRequestEntityTooLarge (413) from `request.read()`; `max_bytes` is a
    tighter bound for one route (413 too). A string with a lone surrogate (valid JSON, not valid Unicode) is
    refused naming where it is, or with `lone_surrogates="replace"` replaced as Ollama does.
    """
    if max_bytes is not None and (request.content_length or 0) > max_bytes:
        raise BadRequest(f"request body is larger than {max_bytes} bytes", status=413)
    # A body of known length within the bound is read whole; one without a length, no further than the bound.
    known = max_bytes is None or request.content_length is not None
    raw = await (request.read() if known else _read_at_most(request, max_bytes))  # type: ignore[arg-type]
    if not raw.strip():
        raise BadRequest("missing request body")
    # Thousands of fields nobody reads cost the event loop (a parse holds the GIL, in a thread too): counted
    # first, in one pass of C over the bytes, and refused before any parse.
    if (keys := raw.count(b'":') - raw.count(b'\\":')) > MAX_JSON_KEYS:
        raise BadRequest(
            f"request body has about {keys} fields, more than {MAX_JSON_KEYS} (no request needs so many)"
        )
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    if depth(data) > MAX_JSON_DEPTH:
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    if SURROGATE_ESCAPE.search(raw) and (where := lone_surrogate_at(data)) is not None:
        if lone_surrogates == "replace":
            return replace_lone_surrogates(data)
        raise BadRequest(f"{where}: holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode")
    return data


def num_ctx_of(body: dict[str, Any]) -> int | None:
    """An Ollama request's options.num_ctx, when it sets a usable one (another than the loaded model's makes
    Ollama reload it)."""
    options = body.get("options")
    value = options.get("num_ctx") if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def with_num_ctx(payload: bytes, num_ctx: int) -> bytes:
    """An Ollama request's body with options.num_ctx set (the rest as it was)."""
    body = json.loads(payload)
    options = body.get("options")
    body["options"] = {**(options if isinstance(options, dict) else {}), "num_ctx": num_ctx}
    return json.dumps(body, ensure_ascii=False).encode()


def parse_body_as(model: type[M], data: dict[str, Any]) -> M:
    """Validate a decoded body; a BadRequest names each bad field: `field: problem`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise BadRequest(detail) from None
