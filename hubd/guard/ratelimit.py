"""Rate limits on callers: a token bucket per API key (per client address when API_KEYS is unset).

RATE_LIMIT requests a minute on average, in bursts of up to RATE_LIMIT_BURST; past that, 429 with
`Retry-After`, in the route's own error format. Every limited answer says where the caller stands:
`X-RateLimit-Limit` (a minute's worth), `X-RateLimit-Remaining`, and `X-RateLimit-Reset` (seconds until the
bucket is full again). Heartbeats, /healthz and / are never limited.
"""

from __future__ import annotations

import math

from aiohttp import web

from ollama_connector.hubd.errors import Handler, error_response
from ollama_connector.hubd.guard.auth import OPEN_PATHS, caller_of
from ollama_connector.hubd.guard.keys import BUCKETS
from ollama_connector.hubd.keys import SETTINGS

# Where the middleware leaves them for on_response_prepare.
RATE_HEADERS = web.RequestKey("ratelimit_headers", dict[str, str])


@web.middleware
async def rate_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    buckets = request.app.get(BUCKETS)
    if buckets is None or request.path in OPEN_PATHS:
        return await handler(request)
    per_minute = request.app[SETTINGS].rate_limit
    allowed, left, wait = buckets.take(caller_of(request))
    headers = request[RATE_HEADERS] = {
        "X-RateLimit-Limit": str(per_minute),
        "X-RateLimit-Remaining": str(math.floor(left)),
        "X-RateLimit-Reset": str(math.ceil(buckets.seconds_to_full(left))),
    }
    if not allowed:
        retry = max(1, math.ceil(wait))
        message = f"rate limit: {per_minute} requests a minute; retry in {retry} s"
        return error_response(request, 429, message, {**headers, "Retry-After": str(retry)})
    return await handler(request)


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, streamed or not, just before its headers go out."""
    if headers := request.get(RATE_HEADERS):
        for name, value in headers.items():
            response.headers.setdefault(name, value)
