"""Who is calling, and what their key allows: with any key in force (API_KEYS, ADMIN_KEYS, the keys file), a
caller presents one as a bearer token (or, on Anthropic's route, as Anthropic's clients send it: an
`x-api-key` header). A user key runs inference and reads the fleet; model management, /metrics and /usage need
an admin key (403 in the route's own dialect, saying so). With no key at all the hub is open, and every caller
an admin.
"""

from __future__ import annotations

from aiohttp import web

from ollama_connector.hubd.errors import Forbidden, Handler, Unauthorized
from ollama_connector.hubd.guard.keyring import Key
from ollama_connector.hubd.guard.keys import AUDIT, KEYRING, NODE_TOKENS, QUOTAS, WRONG_KEYS
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.shared.auth import bearer_of, is_one_of

# What stays open with keys in force: the agents' heartbeats (they carry CLUSTER_TOKEN), the health check,
# the plain `Ollama is running` / dashboard page (which holds no data; its script sends the key), and the
# API's description; and /metrics with METRICS_PUBLIC=1.
OPEN_PATHS = {"/healthz", "/readyz", "/nodes/heartbeat", "/", "/openapi.json"}
X_API_KEY_PATHS = {"/v1/messages"}
MODEL_MANAGEMENT = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete")
# What needs an admin key, and why, in the words a refused user reads.
ADMIN_PATHS = {
    **dict.fromkeys(
        ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"), "model management"
    ),
    "/metrics": "/metrics (or METRICS_PUBLIC=1)",
    "/usage": "usage by key",
    "/audit": "the audit trail",
}
CALLER = web.RequestKey("caller", Key)


def presented_keys(request: web.Request) -> list[str]:
    """The keys a request presents: its bearer token, and its x-api-key on Anthropic's route."""
    keys = [bearer_of(request)]
    if request.path in X_API_KEY_PATHS:
        keys.append(request.headers.get("x-api-key", "").strip() or None)
    return [key for key in keys if key]


def admin_only(path: str) -> str | None:
    """What a path does that needs an admin key, if it does."""
    return ADMIN_PATHS.get(path) or ("model management" if path.startswith("/api/blobs/") else None)


@web.middleware
async def api_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings, ring = request.app[SETTINGS], request.app[KEYRING]
    public = request.path in OPEN_PATHS or (request.path == "/metrics" and settings.metrics_public)
    if not ring or public:
        return await handler(request)
    token = settings.cluster_token
    # The nodes' token is never a caller's key (and the settings refuse a key that is the token).
    address, wrong = request.remote or "?", request.app[WRONG_KEYS]
    wrong.check(address)  # guessing keys goes at a minute's pace
    presented, nodes_token = presented_keys(request), [token] if token else []
    found = [key for p in presented if not is_one_of(p, nodes_token) and (key := ring.find(p))]
    if not found:
        if presented:
            wrong.wrong(address, request.path)
        how = "x-api-key: <key> or " if request.path in X_API_KEY_PATHS else ""
        raise Unauthorized(f"missing or wrong API key ({how}Authorization: Bearer <key>)")
    key = request[CALLER] = found[0]
    if not key.admin and (what := admin_only(request.path)):
        request.app[AUDIT].record(
            key.name or key.caller_id, f"refused {request.method} {request.path}", address
        )
        raise Forbidden(f"{what} needs an admin key; this is a user key")
    request.app[QUOTAS].take_request(key)
    return await handler(request)


def who(request: web.Request) -> Key:
    """The caller's key; with no key in force, an admin known by its address."""
    if (key := request.get(CALLER)) is None:
        key = request[CALLER] = Key("", admin=True, caller_id="addr:" + (request.remote or "?"))
    return key


def caller_of(request: web.Request) -> str:
    """Who is calling, for rate limits, the queue's turns and whose jobs are whose: the key (by name, or an
    environment key by a digest: never a secret), or the caller's address when the hub is open."""
    return who(request).caller_id


def may_run(request: web.Request, model: str) -> Key:
    """The caller's key, when it may run a job on the model (403 naming the model when it may not)."""
    key = who(request)
    if not key.may_use(model):
        raise Forbidden(f"this key may not use model '{model}' (it may use {', '.join(key.models)})")
    request.app[QUOTAS].check_tokens(key)
    return key


def sees_job_of(request: web.Request, caller: str) -> bool:
    """Whether the caller may see a job of `caller`: an admin every job, a user their own."""
    key = who(request)
    return key.admin or key.caller_id == caller


CLUSTER = ""  # the credential of a node that came in with the shared CLUSTER_TOKEN


def node_credential(request: web.Request) -> str | None:
    """Which credential a heartbeat carries, judged before its body is read: the name of a node's own token,
    CLUSTER for the shared token, None on a hub with neither. 401 for none that holds."""
    tokens, shared = request.app[NODE_TOKENS], request.app[SETTINGS].cluster_token
    presented = bearer_of(request)
    if (name := tokens.find(presented)) is not None:
        return name
    if shared is not None and is_one_of(presented, [shared]):
        return CLUSTER
    if shared is None and not tokens:
        return None
    raise Unauthorized(
        "missing or wrong node credential (Authorization: Bearer <NODE_TOKEN or CLUSTER_TOKEN>)"
    )


def may_be_node(request: web.Request, credential: str | None, node_id: str) -> None:
    """403 when the credential is not `node_id`'s: another node's token, or the shared token for a node that
    has its own."""
    if credential and credential != node_id:
        raise Forbidden(
            f"this node token is node {credential!r}'s, and the heartbeat says NODE_ID={node_id!r}: set"
            f" NODE_ID={credential} on this machine, or make it a token of its own (ollama-hubd nodes add"
            f" {node_id})"
        )
    if credential == CLUSTER and node_id in request.app[NODE_TOKENS].names:
        raise Forbidden(
            f"node {node_id!r} has its own credential: its agent must present NODE_TOKEN, not CLUSTER_TOKEN"
        )
