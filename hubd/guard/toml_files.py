"""The guard's small TOML files (the keys file, the nodes file): one table read from them, and an atomic
write readable by the owner only. Neither ever holds a secret, only digests."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any


def read_table(path: Path, table: str) -> dict[str, Any]:
    """The file's `[table.*]` entries; none when the file does not exist. ValueError naming the problem."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    entries = data.get(table) or {}
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: [{table}] must be a table")
    return entries


def write_private(path: Path, lines: list[str]) -> None:
    """Atomically (a crash leaves the previous file), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines))
    os.replace(temporary, path)
