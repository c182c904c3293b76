"""What crosses the wire between node agents and the hub."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from typing_extensions import TypedDict  # pydantic reads these only from typing_extensions before 3.12

NodeStatus = Literal["online", "offline", "degraded", "draining"]

# Bounds on what one heartbeat may carry: a real node is far inside them, a hostile one is refused (400).
MAX_MODELS = 1000
MAX_MODEL_NAME = 300
SHORT_JOB_ID = 8  # characters of a job id shown in lists: its random tail (a UUIDv7 begins with its time)


def short_job_id(job_id: str) -> str:
    """The part of a job id that tells it apart from the others of the same minute."""
    return job_id[-SHORT_JOB_ID:]


MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 4
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _host(value: str) -> str:
    """An IPv4 or IPv6 address, or a DNS name: nothing else (no port, user, path, query or fragment)."""
    text = value.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(text):
        return text.rstrip(".").lower()
    raise ValueError(
        "must be a host alone: an IPv4 or IPv6 address or a DNS name, with no port, user or path"
    )


def _ip(version: int):
    def check(value: str) -> str:
        address = ipaddress.ip_address(value.strip())
        if address.version != version:
            raise ValueError(f"must be an IPv{version} address")
        return str(address)

    return check


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0, but not true or "3"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json_number(value: object) -> object:
    """JSON's number, not true or "0.5"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
JsonNumber = Annotated[float, BeforeValidator(_json_number)]
_HOST_SCHEMA = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"format": "hostname"}]}
Host = Annotated[str, AfterValidator(_host), WithJsonSchema(_HOST_SCHEMA)]
IPv4 = Annotated[str, AfterValidator(_ip(4)), WithJsonSchema({"type": "string", "format": "ipv4"})]
IPv6 = Annotated[str, AfterValidator(_ip(6)), WithJsonSchema({"type": "string", "format": "ipv6"})]
ModelName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_MODEL_NAME)]
# Shown in both UIs and the log: printable characters only.
NodeId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")]


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class Load(BaseModel):
    """Machine load as fractions from 0 to 1."""

    cpu: JsonNumber = Field(0.0, ge=0.0, le=1.0)
    memory: JsonNumber = Field(0.0, ge=0.0, le=1.0)


class Capacity(BaseModel):
    """The node's Ollama settings, unreported by Ollama: the agent sends its own (Ollama's defaults)."""

    num_parallel: JsonInt = Field(1, ge=1, le=1024)  # OLLAMA_NUM_PARALLEL
    max_loaded_models: JsonInt = Field(3, ge=1, le=1024)  # OLLAMA_MAX_LOADED_MODELS (0, "auto", is sent as 3)
    max_queue: JsonInt = Field(512, ge=1, le=1_000_000)  # OLLAMA_MAX_QUEUE
    vram_bytes: JsonInt | None = Field(
        None, ge=0
    )  # memory for models on the GPUs; None: unknown, or a CPU node
    # The context a request without options.num_ctx gets: OLLAMA_CONTEXT_LENGTH, else Ollama's VRAM tier.
    default_context: JsonInt | None = Field(None, ge=1, le=100_000_000)
    weight: JsonNumber = Field(1.0, gt=0, le=1000)  # NODE_WEIGHT: the operator's bias (2: twice as fast)


class Gpu(BaseModel):
    """One GPU of the node, from NVML."""

    name: StrictStr = Field(max_length=200)
    memory_total: JsonInt = Field(ge=0)  # bytes
    memory_used: JsonInt = Field(ge=0)
    utilization: JsonNumber = Field(0.0, ge=0.0, le=1.0)  # share of the last sample period it was busy


class LoadedModel(BaseModel):
    """One model loaded in the node's Ollama now, from its /api/ps."""

    model_config = ConfigDict(extra="ignore")

    name: ModelName
    size: JsonInt = Field(0, ge=0)
    size_vram: JsonInt = Field(0, ge=0)
    context_length: JsonInt | None = Field(None, ge=0)
    expires_at: StrictStr | None = Field(None, max_length=64)


class Heartbeat(BaseModel):
    """Sent by a node agent at start and every HEARTBEAT_INTERVAL seconds."""

    model_config = ConfigDict(extra="ignore")

    node_id: NodeId
    ipv4: IPv4 | None = None  # shown only; the hub never dials these
    ipv6: IPv6 | None = None
    port: JsonInt = Field(ge=1, le=65535)
    models: list[ModelName] = Field(default_factory=list, max_length=MAX_MODELS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    load: Load = Field(default_factory=Load)
    active_jobs: JsonInt = Field(0, ge=0)
    # "draining" asks the hub to send nothing new; "online" is the normal state.
    status: Literal["online", "draining"] = "online"
    # Where the hub should reach the agent (a host; the port is `port`); unset: the heartbeat's source.
    address: Host | None = None
    tls: StrictBool = False  # the agent serves HTTPS
    # What makes the node fast or slow (optional: a seed-shaped heartbeat without them still works).
    capacity: Capacity | None = None
    loaded: list[LoadedModel] = Field(default_factory=list, max_length=64)
    model_sizes: dict[ModelName, JsonInt] = Field(
        default_factory=dict, max_length=MAX_MODELS
    )  # from /api/tags
    gpus: list[Gpu] | None = Field(None, max_length=64)  # None: not reported; []: a CPU node
    disk_free_bytes: JsonInt | None = Field(None, ge=0)  # free space where Ollama keeps its models
    backend: Literal["ollama", "openai"] = "ollama"  # the engine behind the agent (BACKEND)
    hubs: JsonInt = Field(1, ge=1, le=8)  # the hubs the agent reports to (its SERVER_URL)
    hubs_reached: JsonInt | None = Field(None, ge=0, le=8)  # of those, the ones that took its last heartbeat
    # Jobs the agent has sent its Ollama and not yet had answered, per model (from every hub); None: not said.
    in_flight: dict[ModelName, Annotated[JsonInt, Field(ge=0, le=100_000)]] | None = Field(
        None, max_length=64
    )

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if depth(metadata) > MAX_METADATA_DEPTH:
            raise ValueError(f"nests deeper than {MAX_METADATA_DEPTH} levels")
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return metadata


class NodeView(TypedDict):
    """One node as `GET /nodes` shows it: the seed's shape, field for field, and the hub's fields beside."""

    node_id: str
    ipv4: str | None
    ipv6: str | None
    port: int
    models: list[str]
    metadata: dict[str, Any]
    load: dict[str, float]
    last_seen: str
    status: NodeStatus
    active_jobs: int
    failure_count: int
    dial_address: str
    served: int
    last_error: dict[str, str] | None
    capacity: dict[str, Any]
    loaded: list[str]
    running: dict[str, int]
    slots: dict[str, int]  # used and total: NUM_PARALLEL for each loaded model
    elsewhere: dict[str, int]  # jobs other hubs run there per model, as its agent said a moment ago
    restored: bool
    models_loaded: list[dict[str, Any]]  # name, context_length, size_vram, expires_at, loading, running
    gpus: list[dict[str, Any]] | None  # from NVML; [] on a CPU node, None when the agent did not say
    speeds: dict[str, dict[str, Any]]  # learned per model: job_seconds, tokens_per_second, jobs
    load_seconds_per_gb: float | None
    backend: Literal["ollama", "openai"]  # the engine behind its agent
    hubs: dict[str, Any]  # hubs it reports to, reached, and whether fewer than EXPECTED_HUBS
