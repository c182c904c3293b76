"""The keys file, read at start and again when it changes (looked at every RELOAD_SECONDS) or on SIGHUP
(`systemctl reload ollama-hubd`). A file that cannot be read leaves the keys in force as they were, said once
in the log; at start, with no keys in force before it, the hub refuses every caller rather than run open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from ollama_connector.hubd.guard.audit import AuditTrail
from ollama_connector.hubd.guard.keyring import KeyFile, KeyRing, hub_secret
from ollama_connector.hubd.guard.keys import AUDIT, KEYRING
from ollama_connector.hubd.keys import SETTINGS
from ollama_connector.hubd.settings import keys_path

log = logging.getLogger(__name__)
RELOAD_SECONDS = 2.0


class KeyWatch:
    def __init__(self, ring: KeyRing, path: Path, audit: AuditTrail) -> None:
        self.ring, self.path, self.audit = ring, path, audit
        self.seen: tuple[int, int, int] | None = None
        self.failed: str | None = None  # the last error said, so a broken file is said once

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def load(self, why: str) -> bool:
        self.seen = self.stamp()
        try:
            named = KeyFile.read(self.path)
        except ValueError as exc:
            if str(exc) != self.failed:
                self.failed = str(exc)
                log.error("keys file not loaded (%s): %s; the keys in force stay", why, exc)
            return False
        self.failed = None
        before = set(self.ring.names)
        self.ring.replace(named)
        if before != self.ring.names or why != "start":
            added, gone = sorted(self.ring.names - before), sorted(before - self.ring.names)
            if why != "start" and (added or gone):
                change = "; ".join(
                    f"{verb} {', '.join(names)}"
                    for verb, names in (("added", added), ("revoked", gone))
                    if names
                )
                self.audit.record("keys file", change, f"{self.path} ({why})")
            log.info(
                "keys file %s (%s): %d named key(s); added %s, revoked %s",
                self.path,
                why,
                len(self.ring.names),
                added or "none",
                gone or "none",
            )
        return True

    async def watch(self, hup: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELOAD_SECONDS):
                    await hup.wait()
            if hup.is_set():
                hup.clear()
                self.load("SIGHUP")
            elif self.stamp() != self.seen:
                self.load("changed")


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    path = keys_path(settings)
    salt = hub_secret(path.with_name("callers.secret"))
    ring = app[KEYRING] = KeyRing(settings.api_keys, settings.admin_keys, salt=salt)
    watch = KeyWatch(ring, path, app[AUDIT])
    if not watch.load("start"):
        ring.lock()  # fail closed: no caller gets in until the file reads
    hup = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, hup.set)
        hooked = True
    except (RuntimeError, NotImplementedError, ValueError):  # not the main thread, or no signals here
        hooked = False
    task = asyncio.create_task(watch.watch(hup))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if hooked:
            with contextlib.suppress(RuntimeError, ValueError):  # stopped from another thread
                loop.remove_signal_handler(signal.SIGHUP)
