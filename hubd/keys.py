"""Typed application state of the hub."""

from aiohttp import ClientSession, web

from ollama_connector.hubd.fleet.transfers import Transfers
from ollama_connector.hubd.guard.buckets import Buckets
from ollama_connector.hubd.jobs.counters import JobCounters
from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.record import Tracker
from ollama_connector.hubd.jobs.runs import Runs
from ollama_connector.hubd.ops.metrics import HubMetrics
from ollama_connector.hubd.routing.placement import Placement
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.unserved import Unserved
from ollama_connector.hubd.settings import HubSettings

SETTINGS = web.AppKey("settings", HubSettings)
REGISTRY = web.AppKey("registry", Registry)
SESSION = web.AppKey("session", ClientSession)
COUNTERS = web.AppKey("counters", JobCounters)
HOP_ID = web.AppKey("hop_id", str)  # this hub's mark on the requests it sends (see hubd.routing.admission)
PLACEMENT = web.AppKey("placement", Placement)
BUCKETS = web.AppKey("buckets", Buckets)  # only when RATE_LIMIT is set
TRACKER = web.AppKey("tracker", Tracker)  # jobs in progress
JOURNAL = web.AppKey("journal", Journal)
METRICS = web.AppKey("metrics", HubMetrics)
RUNS = web.AppKey("runs", Runs)  # async jobs in progress
TRANSFERS = web.AppKey("transfers", Transfers)  # pulls and creates on nodes, in progress
UNSERVED = web.AppKey("unserved", Unserved)  # routes nodes were found not to serve
