"""Domain errors of the hub, and the one middleware that turns them into JSON bodies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ollama_connector.shared import error_formats
from ollama_connector.shared.bodies import BadRequest

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


class Forbidden(HubError):
    """A key that may not do this: 403, naming what is needed."""

    status = 403


class NoHealthyNodes(HubError):
    status = 503

    def __init__(self, job_id: str, model: str = "", known: bool = True) -> None:
        super().__init__("No healthy nodes available for requested model", headers={"X-Job-Id": job_id})
        self.model = model
        self.known = known  # False: no registered node has the model at all


class CallerError(HubError):
    """The node's Ollama rejected the request itself: its status and message go back to the caller."""

    def __init__(self, message: str, status: int, job_id: str, node_id: str) -> None:
        super().__init__(message, status=status, headers={"X-Job-Id": job_id, "X-Node-Id": node_id})


class NodeTimedOut(HubError):
    """A node accepted the job and then went silent: not run again elsewhere (it may still be running)."""

    status = 504

    def __init__(self, job_id: str, node_id: str, message: str) -> None:
        super().__init__(
            f"node {node_id} {message}; the job was not run again elsewhere",
            headers={"X-Job-Id": job_id, "X-Node-Id": node_id},
        )


class ModelManagementPerNode(HubError):
    status = 501


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


def api_family(request: web.Request) -> error_formats.Format:
    """Which error dialect a route speaks (shared.error_formats.for_path)."""
    return error_formats.for_path(request.path)


def error_response(
    request: web.Request, status: int, detail: Any, headers: dict[str, str] | None = None
) -> web.Response:
    family = api_family(request)
    message = detail if family is error_formats.Seed or isinstance(detail, str) else flatten(detail)
    return error_formats.response(family, status, message, headers)


def flatten(detail: Any) -> str:
    """A detail as one line: an AllNodesFailed body with each node's error after the message."""
    if isinstance(detail, dict) and "errors" in detail:
        reasons = "; ".join(f"{e['node_id']}: {e['message']}" for e in detail["errors"])
        return f"{detail['message']} ({reasons})"
    return str(detail)


# Routes Ollama's middleware turns into a chat, whose handler says "model 'x' not found".
CHAT_HANDLED = ("/v1/messages", "/v1/responses", "/v1/audio/transcriptions")


def model_not_found(request: web.Request, model: str) -> str:
    """Ollama's own wording per route, which clients match on ("not found")."""
    if request.path in CHAT_HANDLED:
        return f"model '{model}' not found"
    if request.path in ("/api/embed", "/api/embeddings") or request.path.startswith("/v1/"):
        return f'model "{model}" not found, try pulling it first'
    if request.path == "/api/show":
        return f"model '{model if ':' in model else model + ':latest'}' not found"
    return f"model '{model}' not found"


@web.middleware
async def error_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NoHealthyNodes as exc:
        seed = api_family(request) is error_formats.Seed
        if not exc.known:
            detail = f"Model '{exc.model}' is not available on any node" if seed else None
            return error_response(request, 404, detail or model_not_found(request, exc.model), exc.headers)
        if not seed:
            detail = f"no healthy node has model '{exc.model}' right now"
            return error_response(request, 503, detail, exc.headers)
        return error_response(request, exc.status, exc.detail, exc.headers)
    except HubError as exc:
        return error_response(request, exc.status, exc.detail, exc.headers)
    except BadRequest as exc:
        return error_response(request, exc.status, str(exc))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        return error_response(request, 413, f"request body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return error_response(request, exc.status, exc.reason, _allow(exc))
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(request, 500, "internal error; the hub's log has the details")


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
