"""The house's plan: the hub's rooms import one way, ollama-top's screens never import its app, and no module
or class grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ollama_connector"
# Lower rooms never import higher ones; rooms of the same rank never import each other.
RANK = {"shared": 0, "core": 1, "guard": 2, "routing": 3, "jobs": 4, "fleet": 4, "ops": 5, "api": 6, "top": 7}
CORE = {"settings", "errors", "keys"}
MAX_MODULE_LINES = 300
MAX_CLASS_LINES = 200


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """Every module the file imports, at the top, inside functions or under TYPE_CHECKING alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            base = node.module.removeprefix(PACKAGE + ".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from hubd.api import jobs`
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE))
    return found


def room_of(module: str) -> str | None:
    """The hub's room a module lives in; None outside the hub (or for a name that is no module)."""
    parts = module.split(".")
    if parts[0] == "shared":
        return "shared"
    if parts[0] != "hubd" or len(parts) < 2:
        return None
    if len(parts) == 2 and parts[1] in RANK:  # a room's own __init__
        return parts[1]
    if len(parts) == 2:
        return "core" if parts[1] in CORE else "top" if parts[1] in {"app", "main"} else None
    return parts[1] if parts[1] in RANK else None


def against_the_grain() -> list[str]:
    wrong = []
    for path in python_files("hubd"):
        module = module_of(path)
        room = room_of(module)
        for target in imports_of(path):
            other = room_of(target)
            if room is None or other is None or other == room:
                continue
            if RANK[other] >= RANK[room]:
                wrong.append(f"{module} ({room}) imports {target} ({other})")
    return wrong


def test_every_module_of_the_hub_is_in_a_room() -> None:
    homeless = [module_of(p) for p in python_files("hubd") if room_of(module_of(p)) is None]
    assert homeless == ["hubd"], homeless  # the package itself


def test_the_hubs_rooms_import_one_way() -> None:
    assert against_the_grain() == []


def test_each_room_says_what_it_owns_and_may_import() -> None:
    for room in ("api", "routing", "jobs", "fleet", "guard", "ops"):
        doc = ast.get_docstring(ast.parse((ROOT / "hubd" / room / "__init__.py").read_text()))
        assert doc and "May import" in doc, room


def test_ollama_tops_screens_never_import_the_app() -> None:
    screens = python_files("tui/screens")
    assert screens, "tui/screens/ holds ollama-top's screens"
    for path in screens:
        assert not any(t.startswith("tui.app") for t in imports_of(path)), path.name


@pytest.mark.parametrize("folder", ["hubd", "noded", "shared", "sim", "tui"])
def test_no_module_or_class_past_a_readers_reach(folder: str) -> None:
    too_long = []
    for path in python_files(folder):
        text = path.read_text()
        if (lines := text.count("\n")) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: class {node.name}")
    assert too_long == []


def test_the_check_sees_an_import_against_the_grain(tmp_path: Path) -> None:
    """The check itself: a routing module that imports the API is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ollama_connector.hubd.api.jobs import routes\n")
    assert room_of("hubd.routing.bad") == "routing"
    assert any(RANK[room_of(t) or "top"] >= RANK["routing"] for t in imports_of(bad))
