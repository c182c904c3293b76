"""Limits on what callers may cost the hub: time to send a body (headers: the runner's keep-alive timeout)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollama_connector.hubd.errors import Handler, error_response
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.bodies import BadRequest
from ollama_connector.shared.wire import MAX_MODEL_NAME

READ_BY_HANDLER = {"/nodes/heartbeat"}


@web.middleware
async def bounded_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read a body within CLIENT_TIMEOUT, so a client trickling bytes cannot hold a connection for ever. A
    heartbeat is read by its handler, within the same time, once its token holds, and no further than its
    own bound (a stranger's body is never buffered)."""
    if request.body_exists and request.path not in READ_BY_HANDLER:
        timeout = request.app[SETTINGS].client_timeout
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # kept by aiohttp: the handler's own read returns it at once
        except TimeoutError:
            response = error_response(request, 408, f"the request body did not arrive within {timeout:g} s")
            response.force_close()  # the rest of the body may still trickle in: no reading it
            return response
    return await handler(request)


def required_model(model: object) -> str:
    """A request's model: present, a string, and a bounded name (400s naming which it is not)."""
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    return check_model_name(model)


def check_model_name(model: str) -> str:
    if len(model) > MAX_MODEL_NAME:
        raise BadRequest(f"model name is longer than {MAX_MODEL_NAME} characters")
    return model
