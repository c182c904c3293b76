"""Application state of the guard room."""

from aiohttp import web

from ollama_connector.hubd.guard.buckets import Buckets

BUCKETS = web.AppKey("buckets", Buckets)  # only when RATE_LIMIT is set
