"""Keeping the registry across a restart, so `systemctl restart ollama-hubd` does not empty the fleet.

The nodes come back as they were at their last heartbeat: after a short restart they are online and routable
at once, instead of after each one's next heartbeat (up to HEARTBEAT_INTERVAL). A node that went silent
meanwhile ages out by the usual TTL.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.routing.keys import REGISTRY
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.hubd.settings import HubSettings, state_directory
from ollama_connector.shared.wire import Heartbeat

log = logging.getLogger(__name__)


def state_path(settings: HubSettings, environ: Mapping[str, str] = os.environ) -> Path | None:
    if settings.state_file:
        return Path(settings.state_file)
    directory = environ.get("STATE_DIRECTORY", "").split(":")[0]  # set by systemd's StateDirectory=
    return Path(directory) / "registry.json" if directory else None


def journal_path(settings: HubSettings, environ: Mapping[str, str] = os.environ) -> Path | None:
    """JOURNAL_PATH; else journal.sqlite3 in systemd's StateDirectory, else in the user's state directory."""
    if settings.journal_path:
        return None if settings.journal_path.lower() == "off" else Path(settings.journal_path)
    return state_directory(environ) / "journal.sqlite3"


def load(registry: Registry, path: Path) -> int:
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        log.warning("could not read the saved registry %s (%s); starting empty", path, exc)
        return 0
    restored = 0
    for entry in entries if isinstance(entries, list) else []:
        try:
            beat = Heartbeat.model_validate(entry["heartbeat"])
            saved = {k: entry.get(k) for k in ("source", "credential", "degraded", "last_error")}
            if not isinstance(saved["credential"], str):
                saved["credential"] = None
            node = registry.restore(beat, str(entry["base_url"]), float(entry["last_seen"]), saved)
            restored += node is not None
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            log.warning("skipping a saved node that does not parse: %s", exc)
    return restored


def saved(registry: Registry) -> list[dict]:
    """What a restart needs to bring the nodes back: their last heartbeats and where to reach them."""
    return [
        {
            "heartbeat": r.beat.model_dump(),
            "base_url": r.base_url,
            "last_seen": r.last_seen_wall,
            "source": r.source,
            "credential": r.credential,  # a name, never a token
            "degraded": r.degraded,
            "last_error": r.last_error,
        }
        for r in registry.all()
    ]


def save(registry: Registry, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(saved(registry)))
        temporary.replace(path)  # atomic: a crash mid-write leaves the previous file
    except OSError as exc:
        log.warning("could not save the registry to %s: %s", path, exc)


async def persistence_ctx(app: web.Application) -> AsyncIterator[None]:
    path = state_path(app[SETTINGS])
    if path is not None and (count := load(app[REGISTRY], path)):
        log.info("restored %d node(s) from %s", count, path)
    yield
    if path is not None:
        save(app[REGISTRY], path)
