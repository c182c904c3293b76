"""Application state of the jobs room."""

from aiohttp import web

from ollama_connector.hubd.jobs.counters import JobCounters
from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.ledger import Ledger
from ollama_connector.hubd.jobs.runs import Runs

COUNTERS = web.AppKey("counters", JobCounters)
LEDGER = web.AppKey("ledger", Ledger)  # every job in progress, and what accounts each one's end
JOURNAL = web.AppKey("journal", Journal)
RUNS = web.AppKey("runs", Runs)  # async jobs in progress
