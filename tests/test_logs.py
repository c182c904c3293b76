"""The daemons' log lines: one line a message, whatever a node or a caller put in the text it logs."""

from __future__ import annotations

import subprocess
import sys

FORGE = "oops\n2026-12-04 12:00:00,000 ERROR hubd: a forged line\x1b[2J"
SCRIPT = f"""
import logging
from ollama_connector.shared.logs import setup_logging
setup_logging("INFO", {{fmt!r}})
logging.getLogger("ollama_connector.hubd.jobs.dispatch").warning("node %s failed: %s", "n1", {FORGE!r})
"""


def test_text_from_a_node_cannot_forge_a_log_line():
    for fmt in ("text", "json"):
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(fmt=fmt)], capture_output=True, text=True, check=True
        )
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and "\x1b" not in run.stderr, run.stderr
        assert "hubd.jobs.dispatch" in lines[0] and "a forged line" in lines[0]
