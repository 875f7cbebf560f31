"""The package layering of DESIGN.md, checked on the source: every `import` of Azote, at module level or inside a
function, goes from a package to one above it, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# DESIGN.md's package table, top to bottom: a package may import the ones above it, never those below.
LAYERS = ["gamepad", "envs", "dataset", "labeling", "policy", "training", "serving", "experts", "agents", "play",
          "bench", "pipeline", "cli"]
# Infrastructure every package may use (the error root, atomic files, the bounded loaders, child lifetimes); it
# imports nothing of Azote but itself.
INFRASTRUCTURE = {"errors", "files", "safeload", "lifetime"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "azote").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The Azote modules `path` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("azote"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("azote"))
    return {m for m in found if m in modules}


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_packages_import_only_the_packages_above_them():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        source = _package(name)
        for target in map(_package, _imports(path, modules)):
            if not source or not target or target == source:
                continue
            if source in INFRASTRUCTURE:
                allowed = target in INFRASTRUCTURE
            else:
                allowed = target in INFRASTRUCTURE or LAYERS.index(target) < LAYERS.index(source)
            if not allowed:
                wrong.append(f"{name} imports azote.{target}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_module_imports_itself_back():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(cycles)
