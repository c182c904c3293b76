"""Logging set-up shared by the daemons."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str) -> None:
    # journald stamps every line itself; a second timestamp only adds noise there.
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if under_journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    # aiohttp's access log is one line per request; keep it for DEBUG only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    )
