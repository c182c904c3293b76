"""Application state of the ops room."""

from aiohttp import web

from ollama_connector.hubd.ops.metrics import HubMetrics

METRICS = web.AppKey("metrics", HubMetrics)
