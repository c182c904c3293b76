"""GET / : the web dashboard for browsers, and Ollama's `Ollama is running` for every other client."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()
_PAGE = (Path(__file__).parent / "static" / "dashboard.html").read_bytes()


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


@routes.route("GET", "/")
async def root(request: web.Request) -> web.Response:
    # aiohttp answers HEAD through GET routes, without a body.
    if wants_html(request):
        return web.Response(
            body=_PAGE, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-cache"}
        )
    return web.Response(text="Ollama is running")
