"""Typed application state of the hub."""

from aiohttp import ClientSession, web

from hubd.counters import JobCounters
from hubd.registry import Registry
from hubd.settings import HubSettings

SETTINGS = web.AppKey("settings", HubSettings)
REGISTRY = web.AppKey("registry", Registry)
SESSION = web.AppKey("session", ClientSession)
COUNTERS = web.AppKey("counters", JobCounters)
