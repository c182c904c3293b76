"""GET /openapi.json: an OpenAPI 3.1 document of the hub's own routes, written from the models the routes use.

The Ollama, OpenAI and Anthropic routes are those projects' own APIs and are documented there; this covers
the seed's routes (jobs, nodes, heartbeats), /stats and /metrics. Every status a route answers is listed, so
a client (and the schemathesis run in the suite) can rely on the list.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from typing_extensions import TypedDict  # pydantic reads these only from typing_extensions before 3.12

from ollama_connector.hubd.api.jobs import JobRequest, JobsQuery
from ollama_connector.hubd.jobs.record import JobView, Status
from ollama_connector.shared.cli import package_version
from ollama_connector.shared.wire import Heartbeat, NodeView

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"


class Detail(TypedDict):
    """The seed's error body: a message, or for a job that failed everywhere, each node's error."""

    detail: str | dict[str, Any]


class Health(TypedDict):
    status: Literal["ok"]
    hubs: NotRequired[dict[str, Any]]  # with EXPECTED_HUBS: nodes by the hubs they reach, and those short


class Ready(TypedDict):
    status: Literal["ready"]


class HeartbeatAnswer(TypedDict):
    status: Literal["online", "offline", "degraded", "draining"]
    node_id: str


class NodeCounts(TypedDict):
    total: int
    online: int
    offline: int
    degraded: int
    draining: int


class JobCounts(TypedDict):
    in_flight: int
    served: int
    failed: int
    jobs_per_second: float  # served, over the last minute
    tokens_per_second: float


class JobList(TypedDict):
    jobs: list[JobView]
    journal: str  # "ok", "failing", or why it is unavailable


class Submitted(TypedDict):
    """An async job, accepted."""

    job_id: str
    status: Status  # as it is when the answer leaves: usually queued or running
    status_url: str
    stream_url: str


class ModelPlaces(TypedDict):
    nodes: list[str]
    online: list[str]


class Queue(TypedDict):
    waiting: int
    by_model: dict[str, int]
    oldest_wait_seconds: dict[str, float]
    copies_loaded_ahead: int


class Stats(TypedDict):
    nodes: NodeCounts
    jobs: JobCounts
    models: dict[str, ModelPlaces]
    queue: Queue
    hubs: dict[str, Any]
    uptime_seconds: float
    version: str


def build() -> dict[str, Any]:
    schemas: dict[str, Any] = {}

    def ref(kind: type) -> dict[str, str]:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            schema = kind.model_json_schema(ref_template=REF)
        else:
            schema = TypeAdapter(kind).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[kind.__name__] = schema
        return {"$ref": REF.format(model=kind.__name__)}

    def answers(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
        described = {"200": ok}
        for status in errors:
            described[str(status)] = {
                "description": ERRORS[status],
                "content": {"application/json": {"schema": ref(Detail)}},
            }
        return described

    def json_answer(kind: type | dict[str, Any], what: str) -> dict[str, Any]:
        schema = kind if isinstance(kind, dict) else ref(kind)
        return {"description": what, "content": {"application/json": {"schema": schema}}}

    def body(kind: type) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": ref(kind)}}}

    keyed = [401, 429]  # with API_KEYS, or RATE_LIMIT, set
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    query = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in JobsQuery.model_json_schema()["properties"].items()
    ]
    paths = {
        "/healthz": {"get": {"summary": "The hub answers", "responses": answers(json_answer(Health, "ok"))}},
        "/readyz": {
            "get": {
                "summary": "The hub has heard from a node since it started: a front may send it callers",
                "responses": answers(json_answer(Ready, "ready"), 503),
            }
        },
        "/nodes": {
            "get": {
                "summary": "Every registered node",
                "responses": answers(
                    json_answer({"type": "array", "items": ref(NodeView)}, "the nodes"), *keyed
                ),
            }
        },
        "/nodes/{node_id}": {
            "get": {
                "summary": "One node",
                "parameters": [
                    {"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": answers(json_answer(NodeView, "the node"), 404, *keyed),
            }
        },
        "/nodes/heartbeat": {
            "post": {
                "summary": "A node agent registers or refreshes itself (CLUSTER_TOKEN as a bearer token)",
                "requestBody": body(Heartbeat),
                "responses": answers(json_answer(HeartbeatAnswer, "registered"), 400, 401, 403, 408, 413),
            }
        },
        "/jobs": {
            "post": {
                "summary": "Run a prompt on the best node: Ollama's /api/generate answer, streamed unless "
                "`stream` is false; with `async` true, 202 at once and the job runs on",
                "requestBody": body(JobRequest),
                "responses": answers(
                    {
                        "description": "Ollama's answer: one object, or NDJSON chunks",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    400,
                    404,
                    408,
                    413,
                    *keyed,
                    503,
                    504,
                )
                | {"202": json_answer(Submitted, "an async job, queued and on disk")},
            },
            "get": {
                "summary": "Recent jobs, newest first: those in progress and those in the journal",
                "parameters": query,
                "responses": answers(json_answer(JobList, "the jobs"), 400, *keyed),
            },
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "One job; an async job's answer once it is done",
                "parameters": job_id,
                "responses": answers(json_answer(JobView, "the job"), 404, *keyed),
            },
            "delete": {
                "summary": "Cancel an async job, on its node too",
                "parameters": job_id,
                "responses": answers(json_answer(JobView, "the job, cancelled"), 403, 404, 409, *keyed),
            },
        },
        "/jobs/{job_id}/stream": {
            "get": {
                "summary": "An async job's NDJSON lines from `from` (0: the first), then live to its end",
                "parameters": [
                    *job_id,
                    {
                        "name": "from",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": answers(
                    {
                        "description": "the lines",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    400,
                    403,
                    404,
                    409,
                    *keyed,
                ),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (open with METRICS_PUBLIC=1)",
                "responses": answers(
                    {
                        "description": "Prometheus' text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    *keyed,
                ),
            }
        },
        "/stats": {
            "get": {
                "summary": "The fleet in one answer",
                "responses": answers(json_answer(Stats, "stats"), *keyed),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ollama-connector hub", "version": package_version()},
        "paths": paths,
        "components": {"schemas": schemas},
    }


ERRORS = {
    400: "the request is malformed; `detail` says what",
    401: "missing or wrong API key (or CLUSTER_TOKEN, for heartbeats)",
    403: "refused: outside NODE_NETWORKS, or MAX_NODES reached; or another API key's async job",
    404: "no such node or job, or no node has the model",
    409: "the job is not async, or has already ended",
    408: "the body did not arrive within CLIENT_TIMEOUT",
    413: "the body is too large",
    429: "rate limited; see Retry-After",
    503: "nodes have the model but none is healthy, or every one failed, or MAX_CONCURRENT_JOBS (or"
    " MAX_ASYNC_JOBS) is reached, or async jobs lack the journal",
    504: "a node took the job and then fell silent",
}
_DOCUMENT = build()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(_DOCUMENT)
