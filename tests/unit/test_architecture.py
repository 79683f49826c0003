"""The shape of the code: one installed namespace, rooms that import each other without cycles, a core that
imports no room. Read from the source with ``ast``, function-level imports included (a cycle hidden inside a
function is still a cycle)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("agent", "finetune", "serve", "tools")
CORE = "core"
ROOT_CLI = "lorastack.cli"
ALLOWED = {
    "agent": {"tools", "serve"},  # the agent's tools; a temporary server to ask when none runs
    "finetune": {"serve", "tools", "agent"},  # register/load what it trained; synthetic data in the agent's own
    # format (its system prompt, the real tools' schemas and outputs)
    "serve": set(),  # promotion gets the agent's eval as a callable (lorastack.evaluation), never an import
    "tools": set(),
    CORE: set(),
}
"""Which rooms each room may import besides the core (the core: lorastack/ less the CLI root, which wires every
room, and imports none)."""


def _modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of the package."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in package_dir.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "lorastack" and parts and parts[0] in ROOMS:
                continue  # not a folder of lorastack/ (there are none), kept apart from the mapped rooms
            modules.setdefault(name, path)
    return modules


def _room(module: str) -> str | None:
    """The room a ``lorastack...`` module belongs to (None: the CLI root, or not lorastack's)."""
    parts = module.split(".")
    if parts[0] != "lorastack":
        return None
    if module == ROOT_CLI:
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else CORE


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


def _edges() -> dict[tuple[str, str], str]:
    """(from room, to room) -> one place that imports so."""
    edges = {}
    for module, path in _modules().items():
        source = _room(module)
        if source is None:
            continue
        for imported, line in _imports(path):
            target = _room(imported)
            if imported == ROOT_CLI:
                target = "cli"
            if target is not None and target != source:
                edges.setdefault((source, target), f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return edges


def test_every_package_folder_installs_under_lorastack() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {p.parent for p in ROOT.glob("*/**/__init__.py") if p.parts[len(ROOT.parts)] in (*ROOMS, "lorastack")}
    for folder in folders:
        top, *rest = folder.relative_to(ROOT).parts
        name = ".".join(["lorastack", *rest] if top == "lorastack" else ["lorastack", top, *rest])
        assert name in listed, f"{folder.relative_to(ROOT)} is a package but pyproject.toml does not install it"
    assert all(setuptools["package-dir"][f"lorastack.{room}"] == room for room in ROOMS)


def test_nothing_imports_a_room_by_its_bare_name() -> None:
    """`import serve` would find the folder only when run from the repository, and shadow anything so named."""
    for path in [*ROOT.glob("*/**/*.py"), *ROOT.glob("*.py")]:
        if path.parts[len(ROOT.parts)] in (".venv", ".git", "build"):
            continue
        for imported, line in _imports(path):
            assert imported.split(".")[0] not in ROOMS, f"{path.relative_to(ROOT)}:{line} imports {imported}"


def test_rooms_import_only_what_the_design_allows_and_never_in_a_circle() -> None:
    edges = _edges()
    for (source, target), where in edges.items():
        assert target == CORE and source != CORE or target in ALLOWED[source], f"{source} must not import {target}: {where}"
    graph = {room: {t for (s, t) in edges if s == room} for room in (*ROOMS, CORE)}
    assert not _cycle(graph), f"import cycle between rooms: {_cycle(graph)}"


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path that returns to its start, or []."""

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        for target in sorted(graph.get(node, ())):
            if found := visit(target, [*path, node]):
                return found
        return []

    for start in sorted(graph):
        if found := visit(start, []):
            return found
    return []


HEAVY = {
    "torch", "transformers", "peft", "bitsandbytes", "unsloth", "trl", "accelerate", "datasets", "safetensors",
    "huggingface_hub", "vllm", "numpy", "matplotlib", "bm25s", "ddgs", "langchain", "langchain_core",
    "langchain_openai", "uvicorn", "fastapi", "prometheus_client", "flash_attn",
}  # fmt: skip
"""Third-party modules slow enough to import that deferring them to the function that needs them is its own
reason (``lorastack --help`` must not load torch). Any other function-level import says why in a comment."""


def test_function_level_imports_defer_something_heavy_or_say_why() -> None:
    unexplained = []
    for module, path in _modules().items():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                    continue
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if all(name.split(".")[0] in HEAVY for name in names):
                    continue
                if not _explained(lines, node.lineno - 1):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, "function-level imports without a reason:\n" + "\n".join(unexplained)


def _explained(lines: list[str], index: int) -> bool:
    """A comment on the import, on any import line of its block, or on the line just above the block."""
    start = index
    while start > 0 and lines[start - 1].strip().startswith(("import ", "from ")):
        start -= 1
    block = lines[start : index + 1]
    if start > 0:
        block.append(lines[start - 1])
    end = index + 1
    while end < len(lines) and lines[end].strip().startswith(("import ", "from ")):
        block.append(lines[end])
        end += 1
    return any("#" in line for line in block)
