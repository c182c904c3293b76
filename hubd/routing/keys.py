"""Application state of the routing room."""

from aiohttp import web

from ollama_connector.hubd.routing.node_client import NodeClient
from ollama_connector.hubd.routing.placement import Placement
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.unserved import Unserved

REGISTRY = web.AppKey("registry", Registry)
PLACEMENT = web.AppKey("placement", Placement)
NODES = web.AppKey("nodes", NodeClient)  # every call to a node, on the app's one session
UNSERVED = web.AppKey("unserved", Unserved)  # routes nodes were found not to serve
