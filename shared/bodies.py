"""Request bodies: read as a JSON object and validated, or a BadRequest that says what is wrong."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """The caller sent something unusable; the message says what."""

    status = 400


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest naming what is wrong with it.

    An oversize body raises aiohttp's HTTPRequestEntityTooLarge (413) from `request.read()`.
    """
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("missing request body")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def parse_body_as(model: type[M], data: dict[str, Any]) -> M:
    """Validate a decoded body; a BadRequest names each bad field: `field: problem`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()
        )
        raise BadRequest(detail) from None
