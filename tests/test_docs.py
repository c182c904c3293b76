"""The README and docs/ as a reader meets them: every link leads somewhere, every shell block marked as
runnable (```bash) names commands, flags, make targets and settings that exist, and the configuration
reference is the one the settings models write."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from ollama_connector.hubd.settings import HubSettings
from ollama_connector.noded.settings import NodeSettings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = {"ollama-hubd", "ollama-noded", "ollama-sim", "ollama-top"}
# Variables the docs set that are not ours: Ollama's own, the shell's, systemd's, ollama-top's.
OTHERS = {
    *("OLLAMA_HOST", "OLLAMA_HUB_URL", "OLLAMA_HUB_API_KEY", "STATE_DIRECTORY", "PYTHON", "PATH"),
    *("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"),  # the SDKs' own
}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAX_README_LINES = 300


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (m := re.match(r"^#+ (.*)", line)):
            found.add(slug(m.group(1)))
    return found


def bash_blocks(page: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@cache
def help_of(script: str, *command: str) -> str:
    """The script's --help, or its command's (`ollama-hubd keys add --help`)."""
    program = str(Path(sys.executable).with_name(script))
    return subprocess.run([program, *command, "--help"], capture_output=True, text=True, check=True).stdout


def command_of(words: list[str]) -> tuple[str, ...]:
    """The subcommand words that follow a script (`keys add`), if it has them."""
    if words[:1] in (["keys"], ["nodes"]):
        return tuple(words[:2]) if len(words) > 1 and not words[1].startswith("-") else (words[0],)
    return ()


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def settings_names() -> set[str]:
    return {f.alias for model in (HubSettings, NodeSettings) for f in model.model_fields.values() if f.alias}


def problems_in(block: str) -> list[str]:
    wrong, known = [], settings_names() | OTHERS
    for raw in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        try:
            words = shlex.split(line.replace("$(", "(").replace("<", "").replace(">", ""))
        except ValueError:
            words = line.split()
        for word in words:
            if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", word)) and m.group(1) not in known:
                wrong.append(f"{m.group(1)} is no setting: {raw.strip()}")
        for i, word in enumerate(words):
            name = word.rsplit("/", 1)[-1]
            if name in SCRIPTS:
                command = command_of(words[i + 1 :])
                for flag in (w.split("=")[0] for w in words[i + 1 :] if w.startswith("--")):
                    if flag not in help_of(name, *command):
                        wrong.append(f"{name} has no {flag}: {raw.strip()}")
            if word == "make" and i + 1 < len(words) and not words[i + 1].startswith("-"):
                target = next((w for w in words[i + 1 :] if "=" not in w), None)
                if target is not None and target not in make_targets():
                    wrong.append(f"make has no target {target}: {raw.strip()}")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_runnable_blocks_name_what_exists(page: Path) -> None:
    assert [p for block in bash_blocks(page) for p in problems_in(block)] == []


def test_the_check_of_blocks_sees_a_wrong_name() -> None:
    assert problems_in("HUB_PROT=1 ollama-hubd --chek\nmake demoo") == [
        "HUB_PROT is no setting: HUB_PROT=1 ollama-hubd --chek",
        "ollama-hubd has no --chek: HUB_PROT=1 ollama-hubd --chek",
        "make has no target demoo: make demoo",
    ]


def test_the_configuration_reference_is_the_one_the_settings_write() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_configuration", ROOT / "docs" / "make_configuration.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TARGET.read_text() == module.render(), "docs/configuration.md is out of date: run make docs"


def test_the_readme_is_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= MAX_README_LINES
