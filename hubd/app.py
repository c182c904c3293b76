"""The hub's app factory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from ollama_connector.hubd.api import (
    anthropic,
    dashboard,
    jobs,
    models,
    nodes,
    ollama,
    openai,
    openapi,
    stats,
    usage,
)
from ollama_connector.hubd.errors import error_bodies
from ollama_connector.hubd.fleet.desired import desired_ctx
from ollama_connector.hubd.fleet.keys import TRANSFERS
from ollama_connector.hubd.fleet.manage import transfers_ctx
from ollama_connector.hubd.fleet.transfers import Transfers
from ollama_connector.hubd.guard.audit import AuditTrail
from ollama_connector.hubd.guard.auth import api_keys
from ollama_connector.hubd.guard.browsers import add_cors_headers, no_pages
from ollama_connector.hubd.guard.buckets import Buckets
from ollama_connector.hubd.guard.key_reload import keys_ctx
from ollama_connector.hubd.guard.keys import AUDIT, BUCKETS, NODE_TOKENS, QUOTAS, WRONG_KEYS
from ollama_connector.hubd.guard.limits import bounded_bodies
from ollama_connector.hubd.guard.quotas import Quotas
from ollama_connector.hubd.guard.ratelimit import add_rate_headers, rate_limits
from ollama_connector.hubd.guard.wrong_keys import WrongKeys
from ollama_connector.hubd.jobs.counters import JobCounters
from ollama_connector.hubd.jobs.durable import journal_ctx
from ollama_connector.hubd.jobs.journal import Journal
from ollama_connector.hubd.jobs.keys import COUNTERS, JOURNAL, LEDGER, RUNS
from ollama_connector.hubd.jobs.ledger import Ledger
from ollama_connector.hubd.jobs.runs import Runs
from ollama_connector.hubd.jobs.takeover import leases_ctx
from ollama_connector.hubd.keys import HOP_ID, SETTINGS
from ollama_connector.hubd.ops.keys import METRICS
from ollama_connector.hubd.ops.metrics import HubMetrics
from ollama_connector.hubd.ops.snapshot import journal_path, persistence_ctx
from ollama_connector.hubd.ops.upkeep import upkeep_ctx
from ollama_connector.hubd.routing.admission import no_loops
from ollama_connector.hubd.routing.keys import NODES, PLACEMENT, REGISTRY, UNSERVED
from ollama_connector.hubd.routing.node_client import NodeClient
from ollama_connector.hubd.routing.placement import Placement
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.routing.unserved import Unserved
from ollama_connector.hubd.settings import HubSettings
from ollama_connector.shared.settings import warn_if_open
from ollama_connector.shared.tls import client_context, server_context

log = logging.getLogger("hubd")


async def client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pool for every call to every node; no per-host cap, since each stream holds a connection.
    # Agents that serve HTTPS are verified against NODE_CA_FILE (or the system's CAs when it is unset).
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, keepalive_timeout=30, ssl=client_context(app[SETTINGS].node_ca_file)
    )
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        settings = app[SETTINGS]
        app[NODES] = NodeClient(
            session, app[HOP_ID], settings.cluster_token, app[NODE_TOKENS], settings.request_timeout
        )
        app[PLACEMENT].replicas.load = app[NODES].preload
        yield
        await app[PLACEMENT].replicas.close()


def create_app(settings: HubSettings) -> web.Application:
    if settings.cluster_token is None:
        warn_if_open(log, settings.hosts, "any machine that reaches this hub can register as a node")
    app = web.Application(
        middlewares=[error_bodies, no_pages, no_loops, api_keys, rate_limits, bounded_bodies],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[HOP_ID] = uuid.uuid4().hex
    app[REGISTRY] = Registry(
        ttl=settings.heartbeat_ttl,
        remove_after=settings.heartbeat_offline,
        max_failures=settings.max_failures,
        probe_interval=settings.probe_interval,
    )
    app[REGISTRY].expected_hubs = settings.expected_hubs
    app[COUNTERS] = JobCounters()
    app[PLACEMENT] = Placement(
        app[REGISTRY],
        settings.routing_policy,
        settings.queue_max,
        settings.queue_timeout,
        settings.sticky_sessions,
    )
    url = settings.journal_url.get_secret_value() if settings.journal_url else None
    app[JOURNAL] = Journal(journal_path(settings), settings.journal_max_days, settings.journal_max_jobs, url)
    app[LEDGER] = Ledger(
        settings.max_concurrent_jobs,
        app[COUNTERS],
        app[JOURNAL],
        max_async=settings.max_async_jobs,
        share=settings.caller_share,
    )
    app[RUNS] = Runs(settings.max_async_jobs)
    app[TRANSFERS] = Transfers()
    app[UNSERVED] = Unserved()
    app[METRICS] = HubMetrics(app[REGISTRY], app[PLACEMENT], app[COUNTERS], app[JOURNAL], app[RUNS])
    app[QUOTAS] = Quotas()
    app[AUDIT] = AuditTrail()
    app[AUDIT].sinks.append(app[JOURNAL].audit)
    app[WRONG_KEYS] = WrongKeys()
    app[LEDGER].watchers += [app[METRICS], app[QUOTAS]]
    if settings.rate_limit:
        app[BUCKETS] = Buckets(settings.rate_limit, settings.rate_limit_burst or settings.rate_limit)
        app.on_response_prepare.append(add_rate_headers)
    app.on_response_prepare.append(add_cors_headers)
    app.cleanup_ctx.extend(
        [
            keys_ctx,
            client_session_ctx,
            persistence_ctx,
            journal_ctx,
            leases_ctx,
            transfers_ctx,
            desired_ctx,
            upkeep_ctx,
        ]
    )
    app.add_routes(nodes.routes)
    app.add_routes(jobs.routes)
    app.add_routes(stats.routes)
    app.add_routes(dashboard.routes)
    app.add_routes(ollama.routes)
    app.add_routes(models.routes)
    app.add_routes(openai.routes)
    app.add_routes(anthropic.routes)
    app.add_routes(openapi.routes)
    app.add_routes(usage.routes)
    return app


def runner_options(settings: HubSettings) -> dict[str, Any]:
    """How the hub serves: HTTPS when HUB_TLS_CERT is set; and a connection that has not sent a whole
    request's headers within CLIENT_TIMEOUT (or sits idle that long) is closed, so no slow client holds it."""
    return {
        "keepalive_timeout": settings.client_timeout,
        "ssl_context": server_context(settings.tls_cert, settings.tls_key),
        "max_connections": settings.max_connections,
    }
