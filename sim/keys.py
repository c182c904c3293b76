"""Typed application state of the simulator."""

from aiohttp import web

from ollama_connector.sim.engine import Engine

ENGINE = web.AppKey("engine", Engine)
VERSION = web.AppKey("version", str)
