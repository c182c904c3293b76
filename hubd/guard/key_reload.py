"""The keys file and the nodes file, read at start and again when they change (looked at every
RELOAD_SECONDS) or on SIGHUP (`systemctl reload ollama-hubd`). A file that cannot be read leaves the keys in
force as they were, said once in the log; at start, with no keys in force before it, the hub refuses every
caller rather than run open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ollama_connector.hubd.guard.audit import AuditTrail
from ollama_connector.hubd.guard.keyring import KeyFile, KeyRing, hub_secret
from ollama_connector.hubd.guard.keys import AUDIT, KEYRING, NODE_TOKENS
from ollama_connector.hubd.guard.node_tokens import NodeFile, NodeTokens
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.settings import keys_path, nodes_path
from ollama_connector.shared.lifecycle import supervised

log = logging.getLogger(__name__)
RELOAD_SECONDS = 2.0


class Watched:
    """A file of names read again when it changes or on SIGHUP; `load` says whether it read. A subclass says
    what it holds: `read` the file, `swap` it in (the names in force before and after)."""

    what = ""  # "keys", "nodes": in the log and the audit trail
    verbs = ("added", "revoked")

    def __init__(self, path: Path, audit: AuditTrail) -> None:
        self.path, self.audit = path, audit
        self.seen: tuple[int, int, int] | None = None
        self.failed: str | None = None  # the last error said, so a broken file is said once

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def read(self) -> Any:
        raise NotImplementedError

    def swap(self, named: Any) -> tuple[set[str], set[str]]:
        raise NotImplementedError

    def load(self, why: str) -> bool:
        self.seen = self.stamp()
        try:
            named = self.read()
        except ValueError as exc:
            if str(exc) != self.failed:
                self.failed = str(exc)
                log.error("%s file not loaded (%s): %s; the %s in force stay", self.what, why, exc, self.what)
            return False
        self.failed = None
        before, after = self.swap(named)
        added, gone = sorted(after - before), sorted(before - after)
        if why != "start" and (added or gone):
            changes = zip(self.verbs, (added, gone), strict=True)
            change = "; ".join(f"{verb} {', '.join(names)}" for verb, names in changes if names)
            self.audit.record(f"{self.what} file", change, f"{self.path} ({why})")
        if before != after or why != "start":
            log.info(
                "%s file %s (%s): %d named; added %s, revoked %s",
                self.what,
                self.path,
                why,
                len(after),
                added or "none",
                gone or "none",
            )
        return True


class KeyWatch(Watched):
    what = "keys"

    def __init__(self, ring: KeyRing, path: Path, audit: AuditTrail) -> None:
        super().__init__(path, audit)
        self.ring = ring

    def read(self) -> KeyFile:
        return KeyFile.read(self.path)

    def swap(self, named: KeyFile) -> tuple[set[str], set[str]]:
        before = set(self.ring.names)
        self.ring.replace(named)
        return before, set(self.ring.names)


class NodeWatch(Watched):
    what, verbs = "nodes", ("added node", "revoked node")

    def __init__(self, tokens: NodeTokens, path: Path, audit: AuditTrail) -> None:
        super().__init__(path, audit)
        self.tokens = tokens

    def read(self) -> NodeFile:
        return NodeFile.read(self.path)

    def swap(self, named: NodeFile) -> tuple[set[str], set[str]]:
        before = self.tokens.names
        self.tokens.replace(named)
        return before, self.tokens.names


async def watch(files: list[Watched], hup: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELOAD_SECONDS):
                await hup.wait()
        reread = hup.is_set()
        hup.clear()
        for file in files:
            if reread:
                file.load("SIGHUP")
            elif file.stamp() != file.seen:
                file.load("changed")


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    path = keys_path(settings)
    salt = hub_secret(path.with_name("callers.secret"))
    ring = app[KEYRING] = KeyRing(settings.api_keys, settings.admin_keys, salt=salt)
    keys = KeyWatch(ring, path, app[AUDIT])
    if not keys.load("start"):
        ring.lock()  # fail closed: no caller gets in until the file reads
    tokens = app[NODE_TOKENS] = NodeTokens(hub_secret(path.with_name("nodes.secret")))
    nodes = NodeWatch(tokens, nodes_path(settings), app[AUDIT])
    nodes.load("start")  # a broken file at start: no node token is known, and every such node is refused
    hup = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, hup.set)
        hooked = True
    except (RuntimeError, NotImplementedError, ValueError):  # not the main thread, or no signals here
        hooked = False
    try:
        async with supervised("the keys files' watch", lambda: watch([keys, nodes], hup)):
            yield
    finally:
        if hooked:
            with contextlib.suppress(RuntimeError, ValueError):  # stopped from another thread
                loop.remove_signal_handler(signal.SIGHUP)
