"""Request bodies: read as a JSON object and validated, or a BadRequest that says what is wrong."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ollama_connector.shared.wire import depth

M = TypeVar("M", bound=BaseModel)


MAX_JSON_DEPTH = 64  # far past any real request (a JSON schema in `format` included), far below the parser's


class BadRequest(Exception):
    """The caller sent something unusable; the message says what."""

    status = 400

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_json_object(request: web.Request, max_bytes: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest naming what is wrong with it.

    An oversize body raises aiohttp's HTTPRequestEntityTooLarge (413) from `request.read()`; `max_bytes` is a
    tighter bound for one route (413 too).
    """
    if max_bytes is not None and (request.content_length or 0) > max_bytes:
        raise BadRequest(f"request body is larger than {max_bytes} bytes", status=413)
    raw = await request.read()
    if max_bytes is not None and len(raw) > max_bytes:
        raise BadRequest(f"request body is larger than {max_bytes} bytes", status=413)
    if not raw.strip():
        raise BadRequest("missing request body")
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
