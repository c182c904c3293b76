"""Logging for the daemons: readable on a terminal, tidy in the journal, or JSON lines."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

# syslog priorities, which journald reads from a "<N>" prefix (SyslogLevelPrefix=, on by default).
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """No timestamp (journald stamps every line) and a priority prefix, so `journalctl -p warning` works."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def short_names(record: logging.LogRecord) -> bool:
    """`hubd.jobs.dispatch` rather than `ollama_connector.hubd.jobs.dispatch`: every logger here is ours."""
    record.name = record.name.removeprefix("ollama_connector.")
    return True


CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def one_line(record: logging.LogRecord) -> bool:
    """Every message one line with no control character: text from a node or a caller (an error message, a
    name) cannot forge a log line of its own, nor move a terminal's cursor."""
    message = record.getMessage()
    escaped = message.translate(CONTROL)
    if escaped != message:
        record.msg, record.args = escaped, None
    return True


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(short_names)
    handler.addFilter(one_line)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aiohttp's access log is a line per request; keep it for DEBUG.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    )
