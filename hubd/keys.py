"""Typed application state of the hub."""

from aiohttp import ClientSession, web

from ollama_connector.hubd.buckets import Buckets
from ollama_connector.hubd.counters import JobCounters
from ollama_connector.hubd.jobrecord import Tracker
from ollama_connector.hubd.journal import Journal
from ollama_connector.hubd.metrics import HubMetrics
from ollama_connector.hubd.placement import Placement
from ollama_connector.hubd.pulls import Transfers
from ollama_connector.hubd.registry import Registry
from ollama_connector.hubd.runs import Runs
from ollama_connector.hubd.settings import HubSettings
from ollama_connector.hubd.unserved import Unserved

SETTINGS = web.AppKey("settings", HubSettings)
REGISTRY = web.AppKey("registry", Registry)
SESSION = web.AppKey("session", ClientSession)
COUNTERS = web.AppKey("counters", JobCounters)
HOP_ID = web.AppKey("hop_id", str)  # this hub's mark on the requests it sends (see hubd.admission)
PLACEMENT = web.AppKey("placement", Placement)
BUCKETS = web.AppKey("buckets", Buckets)  # only when RATE_LIMIT is set
TRACKER = web.AppKey("tracker", Tracker)  # jobs in progress
JOURNAL = web.AppKey("journal", Journal)
METRICS = web.AppKey("metrics", HubMetrics)
RUNS = web.AppKey("runs", Runs)  # async jobs in progress
TRANSFERS = web.AppKey("transfers", Transfers)  # pulls and creates on nodes, in progress
UNSERVED = web.AppKey("unserved", Unserved)  # routes nodes were found not to serve
