"""A web page must not drive the hub, as Ollama keeps pages from driving it.

- `Origin`: a request from a page of another origin is refused (403) unless that origin is allowed: Ollama's
  defaults (`http(s)://localhost`, `127.0.0.1` and `0.0.0.0` on any port, `app://`, `file://`, `tauri://`,
  `vscode-webview://`, `vscode-file://`), the hub's own pages, and HUB_ORIGINS (as OLLAMA_ORIGINS: `*` matches
  anything). Allowed origins get CORS headers, preflights included.
- `Host`: a hub that listens only on loopback answers only to names of this machine (localhost, a loopback,
  private or unspecified address, its host name, `*.localhost`, `*.local`, `*.internal`), as Ollama's
  `allowedHostsMiddleware`: a DNS name rebound to 127.0.0.1 gets 403.
- A heartbeat never comes from a browser: one with `Origin` or `Sec-Fetch-*` headers is refused.

"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import socket

from aiohttp import web

from ollama_connector.hubd.errors import Handler, error_response
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.settings import is_loopback

DEFAULT_ORIGINS = [
    *(
        f"{scheme}://{host}{port}"
        for scheme in ("http", "https")
        for host in ("localhost", "127.0.0.1", "0.0.0.0")
        for port in ("", ":*")
    ),
    *("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"),
]
CORS = web.RequestKey("cors", dict[str, str])
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
CORS_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Session-Id, X-Nodes, x-api-key"
)


def origin_allowed(origin: str, request: web.Request, extra: list[str]) -> bool:
    if origin == f"{request.scheme}://{request.host}":  # a page the hub served itself (the dashboard)
        return True
    return any(fnmatch.fnmatchcase(origin, pattern) for pattern in [*DEFAULT_ORIGINS, *extra])


def host_name(request: web.Request) -> str:
    try:
        return (request.url.host or "").strip("[]").lower()
    except ValueError:  # a Host header yarl cannot read
        return ""


@functools.cache
def loopback_only(hosts: tuple[str, ...]) -> bool:
    """Whether the hub listens on loopback only (the settings are fixed: judged once, not per request)."""
    return all(is_loopback(h) for h in hosts)


@functools.cache
def this_machine() -> str:
    return socket.gethostname().lower()


def host_allowed(name: str) -> bool:
    """Whether a host name (of a Host header) names this machine, for a hub that listens on loopback only."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name in ("localhost", this_machine()) or name.endswith(LOCAL_SUFFIXES)
    return address.is_loopback or address.is_private or address.is_unspecified


@web.middleware
async def no_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if request.path == "/nodes/heartbeat" and (
        "Origin" in request.headers or any(h.startswith("Sec-Fetch-") for h in request.headers)
    ):
        return error_response(request, 403, "heartbeats come from agents, never from a browser")
    if loopback_only(tuple(settings.hosts)) and not host_allowed(host_name(request)):
        return error_response(
            request,
            403,
            f"Host {request.host[:100]!r} is not this machine (this hub listens on loopback only)",
        )
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    if not origin_allowed(origin, request, settings.origins):
        return error_response(request, 403, f"origin {origin[:100]!r} is not allowed (HUB_ORIGINS)")
    cors = request[CORS] = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if request.method == "OPTIONS":
        preflight = {
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS,
        }
        return web.Response(status=204, headers={**cors, **preflight})
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer to an allowed origin, streamed or not, just before its headers go out."""
    for name, value in request.get(CORS, {}).items():
        response.headers.setdefault(name, value)
