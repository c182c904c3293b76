"""Application state of the guard room."""

from aiohttp import web

from ollama_connector.hubd.guard.buckets import Buckets
from ollama_connector.hubd.guard.keyring import KeyRing
from ollama_connector.hubd.guard.quotas import Quotas

BUCKETS = web.AppKey("buckets", Buckets)  # only when RATE_LIMIT is set
KEYRING = web.AppKey("keyring", KeyRing)  # every key in force
QUOTAS = web.AppKey("quotas", Quotas)  # the named keys' own limits
