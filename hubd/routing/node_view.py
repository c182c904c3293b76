"""A node as GET /nodes and GET /nodes/{node_id} show it (shared.wire.NodeView)."""

from __future__ import annotations

from ollama_connector.hubd.routing.node import NodeRecord, iso_utc
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.modelnames import canonical, display
from ollama_connector.shared.wire import NodeView


def node_view(registry: Registry, record: NodeRecord, now: float | None = None) -> NodeView:
    """A node as GET /nodes shows it: the seed's fields, then what routing knows of it."""
    # A plain dict rather than a model: GET /nodes builds thousands of these.
    beat = record.beat
    return {
        "node_id": beat.node_id,
        "ipv4": beat.ipv4,
        "ipv6": beat.ipv6,
        "port": beat.port,
        "models": beat.models,
        "metadata": beat.metadata,
        "load": {"cpu": beat.load.cpu, "memory": beat.load.memory},
        "last_seen": iso_utc(record.last_seen_wall),
        "status": registry.status(record, now),
        "active_jobs": record.active_jobs,
        "failure_count": record.failure_count,
        # Beside the seed's fields: where the hub really dials it, what it served, and its last error.
        "dial_address": record.base_url.split("://", 1)[1],
        "served": record.served,
        "restored": record.restored,  # from the saved registry after a restart, not heard from since
        "last_error": (
            {"message": record.last_error, "at": iso_utc(record.last_error_at)} if record.last_error else None
        ),
        # What the capacity policy routes on: Ollama's settings there, and the hub's view of its models.
        "capacity": record.capacity.model_dump(),
        "loaded": sorted(display(key) for key in record.loaded),
        "running": {display(key): count for key, count in record.running.items()},
        "slots": {"used": record.busy_total(), "total": record.slots()},
        "elsewhere": _elsewhere(record),
        "models_loaded": _loaded_view(record),
        "gpus": [gpu.model_dump() for gpu in beat.gpus] if beat.gpus is not None else None,
        "speeds": {display(key): speed.view() for key, speed in sorted(record.speeds.items())},
        "load_seconds_per_gb": round(record.load_rate.value, 3) if record.load_rate.samples else None,
        "prompt_cache": record.prompts.view(),  # what the hub predicts it holds, and how that fared
        "hubs": hubs_of(registry, record),
        "backend": beat.backend,
    }


def _elsewhere(record: NodeRecord) -> dict[str, int]:
    """Jobs other hubs run there per model, as its agent said a moment ago (several hubs, one fleet)."""
    counts = {display(key): record.busy(key) - record.running.get(key, 0) for key in record.elsewhere}
    return {name: n for name, n in counts.items() if n > 0}


def _loaded_view(record: NodeRecord) -> list[dict]:
    """Loaded models with what /api/ps said of them (expiry, VRAM), and those the hub is loading."""
    reported = {canonical(m.name): m for m in record.beat.loaded}
    entries = []
    for key in sorted(record.loaded):
        entry = reported.get(key)
        entries.append(
            {
                "name": display(key),
                "context_length": record.loaded[key],
                "size_vram": entry.size_vram if entry else record.sizes.get(key),
                "expires_at": entry.expires_at if entry else None,
                "loading": key in record.loading,
                "running": record.running.get(key, 0),
            }
        )
    return entries


def hubs_of(registry: Registry, record: NodeRecord) -> dict:
    """The hubs the node reports to (its SERVER_URL), those that took its last heartbeat, and whether that is
    fewer than EXPECTED_HUBS."""
    beat, expected = record.beat, registry.expected_hubs
    reached = beat.hubs_reached if beat.hubs_reached is not None else beat.hubs
    return {"configured": beat.hubs, "reached": reached, "short": expected is not None and reached < expected}
