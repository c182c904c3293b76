"""What crosses the wire between node agents and the hub."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

NodeStatus = Literal["online", "offline", "degraded", "draining"]


class Load(BaseModel):
    """Machine load as fractions from 0 to 1."""

    cpu: float = Field(0.0, ge=0.0, le=1.0)
    memory: float = Field(0.0, ge=0.0, le=1.0)


class Heartbeat(BaseModel):
    """Sent by a node agent at start and every HEARTBEAT_INTERVAL seconds."""

    model_config = ConfigDict(extra="ignore")

    node_id: StrictStr = Field(min_length=1, max_length=253)
    ipv4: StrictStr | None = None
    ipv6: StrictStr | None = None
    port: StrictInt = Field(ge=1, le=65535)
    models: list[StrictStr] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    load: Load = Field(default_factory=Load)
    active_jobs: StrictInt = Field(0, ge=0)
    # "draining" asks the hub to send nothing new; "online" is the normal state.
    status: Literal["online", "draining"] = "online"
    # Where the hub should reach the agent; unset means the address the heartbeat came from.
    address: StrictStr | None = None


class NodeView(TypedDict):
    """One node as `GET /nodes` shows it: the seed's shape, field for field, and three fields beside them."""

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
