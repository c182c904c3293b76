"""Application state of the fleet room."""

from aiohttp import web

from ollama_connector.hubd.fleet.transfers import Transfers

TRANSFERS = web.AppKey("transfers", Transfers)  # pulls and creates on nodes, in progress
