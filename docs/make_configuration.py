"""Writes docs/configuration.md from the daemons' settings models (`make docs`); `--check` exits 1 when the
file on disk differs, which the test suite runs, so the reference cannot drift from the code."""

from __future__ import annotations

import sys
from pathlib import Path

from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.settings import NodeSettings
from ollama_connector.shared.cli import shown_default
from ollama_connector.shared.settings import EnvSettings

TARGET = Path(__file__).with_name("configuration.md")

PREAMBLE = """# Configuration

<!-- Written by `make docs` (docs/make_configuration.py) from hubd/settings.py and noded/settings.py:
     edit the fields' docstrings there, not this file. -->

Both daemons read environment variables (under systemd, from their env files in `/etc/ollama-connector/`) and
check them at start. A bad value stops the daemon with a message that names the variable, for example
`ollama-hubd: bad configuration: HUB_PORT='eighty': Input should be a valid integer`. An address they
cannot listen on is one line too, naming the settings to change: `ollama-hubd: cannot listen on
0.0.0.0:8000: the port is already in use (is another copy running?); see HUB_HOST and HUB_PORT`.

Each daemon has a small command line:

```bash
ollama-hubd --help      # every setting below: its variable, its default and what it does
ollama-noded --version
ollama-noded --check    # settings valid, the port free, Ollama answering, the hub taking this node's token
ollama-hubd --check     # settings valid, the port free, HUB_STATE_FILE's folder writable
```

`--check` prints a line per check, `ok`, `warn` or `FAIL`, and changes nothing (exit 1 on a `FAIL`). The
agent's proves its token: it sends the hub a heartbeat the hub judges without registering, and says "the hub
refused our CLUSTER_TOKEN" (or NODE_TOKEN), or "SERVER_URL ... is an Ollama server, not a hub", with the fix.
Both daemons warn, at start and in `--check`, about variables that look like theirs but are no setting
(`HUB_*`, `NODE_*`, the `OLLAMA_*` the agent does not read), with the closest real name: `HUB_PROT is set, but
ollama-hubd has no such setting; did you mean HUB_PORT?`. After editing an installed env file,
check it with the same environment before restarting the service:

```bash
sudo sh -c 'set -a; . /etc/ollama-connector/node.env; exec /opt/ollama-connector/bin/ollama-noded --check'
```

A boolean is `1` or `0`; a list is comma-separated. `NODE_REQUEST_TIMEOUT` bounds the silence between two
bytes, not the whole answer, so a long stream is never cut while tokens keep coming: while Ollama loads a
model or composes a `"stream": false` answer, the agent sends the hub keep-alives.
"""

DAEMONS: list[tuple[str, str, type[EnvSettings]]] = [
    ("ollama-hubd", "the hub", HubSettings),
    ("ollama-noded", "the agent beside each Ollama", NodeSettings),
]


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    parts = [PREAMBLE]
    for program, what, settings in DAEMONS:
        parts.append(f"\n## `{program}`: {what}\n\n| Variable | Default | Description |\n| --- | --- | --- |")
        for name, field in settings.model_fields.items():
            variable = field.alias or name
            parts.append(
                f"| `{variable}` | `{cell(shown_default(field))}` | {cell(field.description or '')} |"
            )
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
