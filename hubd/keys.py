"""The hub's own application state, used by every room: its settings and its hop mark.

Each room keeps its own keys beside its code (hubd.routing.keys, hubd.jobs.keys, ...), so this module imports
nothing of theirs.
"""

from aiohttp import web

from ollama_connector.hubd.settings import HubSettings

SETTINGS = web.AppKey("settings", HubSettings)
HOP_ID = web.AppKey("hop_id", str)  # this hub's mark on the requests it sends (see hubd.routing.admission)
