"""Application state of the guard room."""

from aiohttp import web

from ollama_connector.hubd.guard.audit import AuditTrail
from ollama_connector.hubd.guard.buckets import Buckets
from ollama_connector.hubd.guard.keyring import KeyRing
from ollama_connector.hubd.guard.node_tokens import NodeTokens
from ollama_connector.hubd.guard.quotas import Quotas
from ollama_connector.hubd.guard.wrong_keys import WrongKeys

AUDIT = web.AppKey("audit", AuditTrail)  # who did what that needs an admin
BUCKETS = web.AppKey("buckets", Buckets)  # only when RATE_LIMIT is set
KEYRING = web.AppKey("keyring", KeyRing)  # every key in force
NODE_TOKENS = web.AppKey("node_tokens", NodeTokens)  # every node's own credential
QUOTAS = web.AppKey("quotas", Quotas)  # the named keys' own limits
WRONG_KEYS = web.AppKey("wrong_keys", WrongKeys)  # wrong keys by address: said once a burst, slowed
