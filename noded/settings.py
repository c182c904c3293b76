"""The node agent's configuration, from environment variables."""

from __future__ import annotations

import socket
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from ollama_connector.shared.settings import (
    CommaList,
    EnvSettings,
    HttpUrl,
    HttpUrlList,
    LogFormat,
    LogLevel,
    OptionalStr,
    OptionalToken,
    StrongToken,
    blank_to_none,
    open_to_the_network,
)
from ollama_connector.shared.wire import Host, IPv4, IPv6


class NodeSettings(EnvSettings):
    """Every knob of `ollama-noded`; the alias of each field is its environment variable."""

    own_prefixes = ("NODE_", "OLLAMA_")

    server_url: HttpUrlList = Field(["http://localhost:8000"], alias="SERVER_URL")
    """The hub this node registers with; several hubs comma-separated (up to 8): it heartbeats each on its
    own schedule, one hub down never delays the others, and takes jobs from any of them."""
    node_id: str = Field(
        default_factory=socket.gethostname,
        alias="NODE_ID",
        min_length=1,
        max_length=253,
        json_schema_extra={"shown_default": "the host name"},
    )
    """Stable identifier reported in heartbeats; defaults to the host name."""
    hosts: CommaList = Field(["0.0.0.0"], alias="NODE_HOST", min_length=1)
    """Addresses the agent listens on, comma-separated."""
    port: int = Field(8001, alias="NODE_PORT", ge=0, le=65535)
    """Port the agent listens on."""
    ollama_url: HttpUrl = Field("http://127.0.0.1:11434", alias="OLLAMA_BASE_URL")
    """The local Ollama; keep it on loopback, the agent is the only way in."""
    backend: Literal["ollama", "openai"] = Field("ollama", alias="BACKEND")
    """`ollama`, or `openai` for a server that speaks only OpenAI's API (llama.cpp's llama-server, vLLM, LM
    Studio, LocalAI): the agent then translates Ollama-shaped work for it."""
    backend_url: OptionalStr = Field(None, alias="BACKEND_URL")
    """The engine's address (its /v1 routes are under it); for Ollama it may stand for OLLAMA_BASE_URL."""
    backend_api_key: OptionalToken = Field(None, alias="BACKEND_API_KEY")
    """A bearer token the engine wants (vLLM's --api-key, llama-server's --api-key); never logged."""
    heartbeat_interval: float = Field(30.0, alias="HEARTBEAT_INTERVAL", gt=0)
    """Seconds between heartbeats."""
    required_models: CommaList = Field([], alias="REQUIRED_MODELS")
    """Models to pull at start when Ollama lacks them, comma-separated; none unless listed (each is GBs)."""
    skip_model_pull: bool = Field(False, alias="SKIP_MODEL_PULL")
    """Set to 1 to pull nothing."""
    ipv4: Annotated[IPv4 | None, BeforeValidator(blank_to_none)] = Field(None, alias="NODE_IPV4")
    """IPv4 address to report; default: the machine's primary non-loopback one."""
    ipv6: Annotated[IPv6 | None, BeforeValidator(blank_to_none)] = Field(None, alias="NODE_IPV6")
    """IPv6 address to report; default: the machine's primary global one."""
    address: Annotated[Host | None, BeforeValidator(blank_to_none)] = Field(None, alias="NODE_ADDRESS")
    """Host the hub should dial (an address or DNS name, no port); default: the heartbeat's source address.
    The hub takes another address than the source only when its NODE_NETWORKS hold it."""
    cluster_token: StrongToken = Field(None, alias="CLUSTER_TOKEN")
    """Shared secret with the hub: sent on heartbeats, required on /execute."""
    node_token: StrongToken = Field(None, alias="NODE_TOKEN")
    """This node's own credential, from `ollama-hubd nodes add NODE_ID` on the hub: used instead of
    CLUSTER_TOKEN, so the hub knows this machine as NODE_ID and no other."""
    drain_timeout: float = Field(60.0, alias="DRAIN_TIMEOUT_SECONDS", ge=0)
    """On SIGTERM, how long jobs in flight may take to finish before the agent exits."""
    tls_cert: OptionalStr = Field(None, alias="NODE_TLS_CERT")
    """A PEM certificate (chain) file: the agent then serves HTTPS only, and tells the hub so."""
    tls_key: OptionalStr = Field(None, alias="NODE_TLS_KEY")
    """The PEM private key of NODE_TLS_CERT."""
    hub_ca_file: OptionalStr = Field(None, alias="HUB_CA_FILE")
    """The CA that signed the hub's certificate, for an https:// SERVER_URL; unset: the system's CAs."""
    num_parallel: int = Field(1, alias="OLLAMA_NUM_PARALLEL", ge=1)
    """The local Ollama's OLLAMA_NUM_PARALLEL (Ollama does not report it): requests a model serves at once.
    The agent lets no more through at once, from all hubs together (the next gets 503 `node_full`)."""
    max_loaded_models: int = Field(0, alias="OLLAMA_MAX_LOADED_MODELS", ge=0)
    """The local Ollama's OLLAMA_MAX_LOADED_MODELS; 0, Ollama's default, is 3 per GPU (3 on a CPU node). The
    agent runs jobs of at most this many models at once (3 when 0)."""
    max_queue: int = Field(512, alias="OLLAMA_MAX_QUEUE", ge=1)
    """The local Ollama's OLLAMA_MAX_QUEUE."""
    vram_gb: float = Field(0.0, alias="NODE_VRAM_GB", ge=0)
    """GPU memory Ollama may fill with models, in GB, so the hub knows what fits; 0: the GPUs' total from
    NVML, or none on a CPU node."""
    context_length: int = Field(0, alias="OLLAMA_CONTEXT_LENGTH", ge=0)
    """The local Ollama's OLLAMA_CONTEXT_LENGTH; 0, Ollama's default, is 4k, 32k or 256k by VRAM."""
    weight: float = Field(1.0, alias="NODE_WEIGHT", ge=0.1, le=10)
    """A manual bias for mixed hardware, from 0.1 to 10: 2 tells the hub this node is twice as fast as its
    figures say."""
    allow_open_cluster: bool = Field(False, alias="ALLOW_OPEN_CLUSTER")
    """1 lets the agent listen beyond loopback with no CLUSTER_TOKEN: anyone who reaches it can use Ollama."""
    models_dir: OptionalStr = Field(None, alias="OLLAMA_MODELS")
    """Where the local Ollama keeps its models (its own OLLAMA_MODELS), for the free space the hub checks
    before a pull; unset: /usr/share/ollama/.ollama/models (the service's), else ~/.ollama/models."""
    metrics_public: bool = Field(False, alias="METRICS_PUBLIC")
    """1 serves GET /metrics without CLUSTER_TOKEN (for a Prometheus that holds none)."""
    log_level: LogLevel = Field("INFO", alias="LOG_LEVEL")
    """Logging verbosity."""
    log_format: LogFormat = Field("text", alias="LOG_FORMAT")
    """`text`, or `json` for one JSON object per line."""

    @model_validator(mode="before")
    @classmethod
    def _backend_url(cls, values: dict) -> dict:
        """BACKEND_URL is where the engine answers, whichever it is; OLLAMA_BASE_URL stays Ollama's name."""
        if isinstance(values, dict) and (url := blank_to_none(values.get("BACKEND_URL"))):
            values = {**values, "OLLAMA_BASE_URL": url}
        elif isinstance(values, dict) and values.get("BACKEND") == "openai":
            raise ValueError(
                "BACKEND=openai needs BACKEND_URL: the server's address, e.g. http://127.0.0.1:8080"
            )
        return values

    @model_validator(mode="after")
    def _not_open_by_accident(self) -> NodeSettings:
        open_to_the_network(self.hosts, self.hub_token, self.allow_open_cluster, "NODE_HOST")
        return self

    @property
    def hub_token(self) -> SecretStr | None:
        """The credential between this agent and the hub: its NODE_TOKEN, else the shared CLUSTER_TOKEN."""
        return self.node_token or self.cluster_token
