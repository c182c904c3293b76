"""Domain errors of the hub, and the one middleware that turns them into JSON bodies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shared.http import BadRequest

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HubError(Exception):
    """An error answered as `{"detail": ...}` with a status (the seed's error shape)."""

    status = 500

    def __init__(self, detail: Any, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.headers = headers or {}


class Unauthorized(HubError):
    status = 401


class NoHealthyNodes(HubError):
    status = 503

    def __init__(self, job_id: str) -> None:
        super().__init__("No healthy nodes available for requested model", headers={"X-Job-Id": job_id})


class AllNodesFailed(HubError):
    status = 503

    def __init__(self, job_id: str, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        detail = {
            "message": "All candidate nodes failed to execute the job",
            "errors": errors,
            "job_id": job_id,
        }
        super().__init__(detail, headers={"X-Job-Id": job_id})


@web.middleware
async def error_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HubError as exc:
        return web.json_response({"detail": exc.detail}, status=exc.status, headers=exc.headers)
    except BadRequest as exc:
        return web.json_response({"detail": str(exc)}, status=exc.status)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        return web.json_response({"detail": f"request body is larger than {limit} bytes"}, status=413)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status, headers=_allow(exc))
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return web.json_response({"detail": "internal error; the hub's log has the details"}, status=500)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
