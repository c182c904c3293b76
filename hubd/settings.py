"""The hub's configuration, from environment variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from platformdirs import user_state_path
from pydantic import Field, model_validator

from ollama_connector.shared.settings import (
    CommaList,
    EnvSettings,
    LogFormat,
    LogLevel,
    NetworkList,
    OptionalStr,
    OptionalToken,
    SecretList,
    StrongToken,
    open_to_the_network,
)

ALL = "all"


def parse_fleet_models(value: list[str]) -> dict[str, str | int]:
    """FLEET_MODELS: `model=all` or `model=N` (N >= 1), comma-separated; ValueError naming a bad entry."""
    wanted: dict[str, str | int] = {}
    for entry in value:
        model, _, count = entry.rpartition("=")
        if not model or not (count == ALL or (count.isdigit() and int(count) >= 1)):
            raise ValueError(f"FLEET_MODELS entry {entry!r} is not model=all or model=N (N >= 1)")
        wanted[model] = ALL if count == ALL else int(count)
    return wanted


class HubSettings(EnvSettings):
    """Every knob of `ollama-hubd`; the alias of each field is its environment variable."""

    own_prefixes = ("HUB_",)

    hosts: CommaList = Field(["0.0.0.0"], alias="HUB_HOST", min_length=1)
    """Addresses to listen on, comma-separated (for example `0.0.0.0,::` for IPv4 and IPv6)."""
    port: int = Field(8000, alias="HUB_PORT", ge=0, le=65535)
    """Port to listen on."""
    heartbeat_ttl: float = Field(90.0, alias="HEARTBEAT_TTL_SECONDS", gt=0)
    """Seconds without a heartbeat before a node is shown offline and gets no jobs."""
    heartbeat_offline: float = Field(180.0, alias="HEARTBEAT_OFFLINE_SECONDS", gt=0)
    """Seconds without a heartbeat before a node is removed from the registry."""
    max_failures: int = Field(3, alias="NODE_MAX_FAILURES", ge=1)
    """Consecutive failures that make a node degraded."""
    request_timeout: float = Field(120.0, alias="NODE_REQUEST_TIMEOUT", gt=0)
    """Seconds a node may be silent: to connect, and between two bytes or keep-alives of its answer."""
    stall_min: float = Field(30.0, alias="STALL_MIN_SECONDS", gt=0)
    """The least a job waits for its first byte, or a stream between two tokens, before the node counts as
    stalled (the job then goes to another node, or the stream ends with an error); the hub waits longer when
    it expects longer: 3x the predicted start (a load included), 10x the node's gap between tokens."""
    probe_interval: float = Field(30.0, alias="NODE_PROBE_INTERVAL", gt=0)
    """Seconds a degraded node rests before the hub probes its /healthz; doubles after each failed probe."""
    cluster_token: StrongToken = Field(None, alias="CLUSTER_TOKEN")
    """Shared secret between the hub and its nodes; unset means no authentication (a warning at start)."""
    api_keys: SecretList = Field([], alias="API_KEYS")
    """User keys, comma-separated: inference on every route, the fleet's views, and their own jobs only.
    With no key at all (here, in ADMIN_KEYS or in KEYS_FILE) the API is open to whoever reaches it."""
    admin_keys: SecretList = Field([], alias="ADMIN_KEYS")
    """Admin keys, comma-separated: everything a user may do, and model management, every job, /metrics and
    /usage."""
    allowed_registries: CommaList = Field(["registry.ollama.ai"], alias="ALLOWED_REGISTRIES")
    """Registries pulls may name, comma-separated (a model's host: `hf.co/user/model` is from hf.co); a pull
    from another gets 403, even with an admin key."""
    allow_insecure_pulls: bool = Field(False, alias="ALLOW_INSECURE_PULLS")
    """1 lets a pull ask for `"insecure": true` (a registry without TLS, or an untrusted certificate)."""
    allow_open_api: bool = Field(False, alias="ALLOW_OPEN_API")
    """1 lets the hub listen beyond loopback with no caller key at all: anyone who reaches it may pull,
    delete and run models, and read every job."""
    origins: CommaList = Field([], alias="HUB_ORIGINS")
    """Web origins allowed to call the hub beside Ollama's defaults (localhost, 127.0.0.1, app://, file://...),
    comma-separated, `*` matching anything, as OLLAMA_ORIGINS: `https://chat.example.org,chrome-extension://*`."""
    keys_file: OptionalStr = Field(None, alias="KEYS_FILE")
    """Named keys with their roles, models and limits, managed by `ollama-hubd keys`; read again within 5 s of
    a change and on SIGHUP. Unset: `keys.toml` in the state directory (the journal's)."""
    max_body_bytes: int = Field(32 * 1024 * 1024, alias="MAX_REQUEST_BYTES", ge=1024)
    """Largest request body accepted (images in prompts make bodies large); bigger bodies get 413."""
    state_file: OptionalStr = Field(None, alias="HUB_STATE_FILE")
    """Where the registry is saved on stop and read at start; under systemd, STATE_DIRECTORY/registry.json."""
    drain_timeout: float = Field(60.0, alias="DRAIN_TIMEOUT_SECONDS", ge=0)
    """On SIGTERM, how long streams in flight may take to finish before the hub exits."""
    allow_open_cluster: bool = Field(False, alias="ALLOW_OPEN_CLUSTER")
    """1 lets the hub listen beyond loopback with no CLUSTER_TOKEN: any machine reaching it can register."""
    node_networks: NetworkList = Field([], alias="NODE_NETWORKS")
    """Networks (CIDRs, comma-separated) that node addresses must be in; unset: any address but the hub's."""
    max_connections: int = Field(4096, alias="MAX_CONNECTIONS", ge=8)
    """Connections open at once (callers and agents together); the next ones get a one-line 503 and are
    closed. Keep it under the hub's file limit (LimitNOFILE in its unit)."""
    max_nodes: int = Field(1000, alias="MAX_NODES", ge=1)
    """Registered nodes at most; a heartbeat from a new node past it is refused (403)."""
    node_max_slots: int = Field(64, alias="NODE_MAX_SLOTS", ge=1, le=4096)
    """The most parallel requests per model (and loaded models) the hub believes of one node, whatever its
    heartbeat claims (an OLLAMA_NUM_PARALLEL past it counts as this); raise it for vLLM-style servers."""
    rate_limit: int = Field(0, alias="RATE_LIMIT", ge=0)
    """Requests a minute per API key (per client address without API_KEYS); 0: no limit."""
    rate_limit_burst: int = Field(0, alias="RATE_LIMIT_BURST", ge=0)
    """Requests a caller may send at once before RATE_LIMIT applies; 0: a minute's worth (RATE_LIMIT)."""
    routing_policy: Literal["capacity", "least-busy", "round-robin", "affinity"] = Field(
        "capacity", alias="ROUTING_POLICY"
    )
    """`capacity`: loaded models, free slots, the prompt each node has cached, then the hub's queue (see How
    it works); `least-busy`: the old ranking; `round-robin`: nodes in turn; `affinity`: least-busy with fixed
    bonuses for a conversation's node and a long system prompt's (as Herd does), for comparison."""
    queue_max: int = Field(1024, alias="QUEUE_MAX", ge=0)
    """Jobs that may wait at the hub for a free node (capacity policy); past it, 503 server busy."""
    queue_timeout: float = Field(60.0, alias="QUEUE_TIMEOUT_SECONDS", gt=0)
    """Seconds a job may wait at the hub for a free node before a 503 with Retry-After."""
    expected_hubs: int | None = Field(None, alias="EXPECTED_HUBS", ge=1, le=8)
    """How many hubs each node should report to (its SERVER_URL); a node whose last heartbeat says it reaches
    fewer is flagged in /nodes, /stats and ollama-top. Unset: no check."""
    prefix_routing: bool = Field(True, alias="PREFIX_ROUTING")
    """Capacity policy: price the part of each prompt a node has not cached (each node's recent prompts,
    remembered as hashes of their blocks; see How it works). 0: every prompt is priced as new everywhere."""
    sticky_sessions: bool = Field(True, alias="STICKY_SESSIONS")
    """Send a conversation back to the node that served it (its KV cache), while that node has a free slot:
    keyed by an `X-Session-Id` header, OpenAI's `user` field, or a hash of the first messages."""
    max_concurrent_jobs: int = Field(512, alias="MAX_CONCURRENT_JOBS", ge=1)
    """Jobs the hub runs at once, over all callers; past it a job gets 503 with Retry-After (async jobs are
    bounded by MAX_ASYNC_JOBS instead)."""
    client_timeout: float = Field(30.0, alias="CLIENT_TIMEOUT", gt=0)
    """Seconds a caller may take to send a request's headers, or its body, before the hub hangs up."""
    tls_cert: OptionalStr = Field(None, alias="HUB_TLS_CERT")
    """A PEM certificate (chain): the hub then serves HTTPS only (with HUB_TLS_KEY, or one file with both)."""
    tls_key: OptionalStr = Field(None, alias="HUB_TLS_KEY")
    """The PEM private key of HUB_TLS_CERT."""
    node_ca_file: OptionalStr = Field(None, alias="NODE_CA_FILE")
    """The CA that signed the agents' certificates; the hub trusts only it for agents that serve HTTPS."""
    journal_path: OptionalStr = Field(None, alias="JOURNAL_PATH")
    """The job journal's SQLite file; unset: `journal.sqlite3` in the state directory (systemd's
    StateDirectory, else the user's, from platformdirs); `off`: no journal (and no async jobs)."""
    journal_url: OptionalToken = Field(None, alias="JOURNAL_URL")
    """`postgresql://user:password@host:5432/database`: jobs and the journal in PostgreSQL, shared by every
    hub that names it (two hubs, no single point of failure); JOURNAL_PATH is then unused. Unset: SQLite."""
    job_lease: float = Field(10.0, alias="JOB_LEASE_SECONDS", ge=1, le=300)
    """With JOURNAL_URL: how long a hub holds an async job it runs without renewing its lease (renewed every
    third of it); past it, another hub takes the job over and runs it again from the start."""
    journal_max_days: float = Field(30.0, alias="JOURNAL_MAX_DAYS", gt=0)
    """Days a finished job stays in the journal."""
    journal_max_jobs: int = Field(100_000, alias="JOURNAL_MAX_JOBS", ge=1)
    """Finished jobs the journal keeps at most; the oldest go first."""
    caller_share: float = Field(0.5, alias="CALLER_SHARE", gt=0, le=1)
    """The share of each hub-wide cap (MAX_CONCURRENT_JOBS, MAX_ASYNC_JOBS, pulls and creates at once) that
    one caller may hold: a key, or without keys an address. 0.5: no one caller takes more than half of any;
    a key's own `share` (`ollama-hubd keys add --share`) overrides it."""
    max_async_jobs: int = Field(1000, alias="MAX_ASYNC_JOBS", ge=1)
    """Async jobs (`"async": true`) unfinished at once; past it, 503 with Retry-After."""
    max_answer_bytes: int = Field(16 * 1024 * 1024, alias="MAX_ANSWER_BYTES", ge=1024)
    """Largest answer an async job may store; a longer one is stopped and fails, naming this setting."""
    fleet_models: CommaList = Field([], alias="FLEET_MODELS")
    """Models the hub keeps on that many online nodes, pulling where missing: `llama3:8b=all,qwen2.5:14b=2`.
    It never deletes a model."""
    metrics_public: bool = Field(False, alias="METRICS_PUBLIC")
    """1 serves GET /metrics without an API key (for a Prometheus that holds none)."""
    log_level: LogLevel = Field("INFO", alias="LOG_LEVEL")
    """Logging verbosity."""
    log_format: LogFormat = Field("text", alias="LOG_FORMAT")
    """`text`, or `json` for one JSON object per line."""

    @model_validator(mode="after")
    def _removal_after_offline(self) -> HubSettings:
        if self.heartbeat_offline < self.heartbeat_ttl:
            raise ValueError("HEARTBEAT_OFFLINE_SECONDS must not be shorter than HEARTBEAT_TTL_SECONDS")
        if not has_node_tokens(self):  # each node has its own credential: no shared token needed
            open_to_the_network(self.hosts, self.cluster_token, self.allow_open_cluster, "HUB_HOST")
        parse_fleet_models(self.fleet_models)  # a bad entry stops the hub at start, named
        if self.journal_url is not None:
            scheme = self.journal_url.get_secret_value().split("://", 1)[0]
            if scheme not in ("postgresql", "postgres") or "://" not in self.journal_url.get_secret_value():
                raise ValueError("JOURNAL_URL must be a PostgreSQL URL: postgresql://user:password@host/db")
        if self.cluster_token is not None:
            token = self.cluster_token.get_secret_value()
            if any(key.get_secret_value() == token for key in [*self.api_keys, *self.admin_keys]):
                raise ValueError(
                    "CLUSTER_TOKEN is for nodes: it cannot be a caller's key in API_KEYS or ADMIN_KEYS"
                )
        return self


def state_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the hub keeps its state: systemd's StateDirectory when it runs there, else the user's."""
    directory = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) if directory else user_state_path("ollama-connector")


def keys_path(settings: HubSettings, environ: Mapping[str, str] = os.environ) -> Path:
    return Path(settings.keys_file) if settings.keys_file else state_directory(environ) / "keys.toml"


def nodes_path(settings: HubSettings, environ: Mapping[str, str] = os.environ) -> Path:
    """The nodes' own credentials (`ollama-hubd nodes`): beside the keys file."""
    return keys_path(settings, environ).with_name("nodes.toml")


def has_node_tokens(settings: HubSettings) -> bool:
    try:
        return bool(tomllib.loads(nodes_path(settings).read_text()).get("nodes"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
