"""The package's layering, read from the source: who may import whom, and no import cycles.

Every import counts, including those inside functions and ``TYPE_CHECKING`` blocks: a
deferred import hides a dependency from Python, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folders and the package each installs as (pyproject's package-dir).
SOURCES = {
    "persona_sdk": ROOT / "persona_sdk",
    "persona_sdk.adapters": ROOT / "adapters",
    "persona_sdk.memory": ROOT / "memory",
    "persona_sdk.cli": ROOT / "cli",
}
# Imported only by the CLI, benchmarks and tests.
OFFLINE = ("persona_sdk.simulation", "persona_sdk.evals")
CORE = (
    "persona_sdk.decoding",
    "persona_sdk.reward",
    "persona_sdk.memory",
    "persona_sdk.adapters",
    "persona_sdk.text",
    "persona_sdk.quality",
    "persona_sdk.constraints",
)


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if package == "persona_sdk" and parts and parts[0] in ("adapters", "memory", "cli"):
                continue  # never the case; guards against a stray copy
            found[name] = path
    return found


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The project module ``target`` names, or its nearest enclosing project package."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Project modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names]
            # `from pkg import submodule` needs the submodule, not what pkg's __init__ imports
            targets = names if all(n in MODULES for n in names) else [*names, base]
        else:
            continue
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != name:
                out.add(resolved)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_every_package():
    assert {"persona_sdk.persona", "persona_sdk.memory.store", "persona_sdk.cli.main"} <= set(GRAPH)
    assert "persona_sdk.memory.store" in GRAPH["persona_sdk.memory.index"]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _within(m, CORE)))
def test_the_core_never_imports_the_simulator_or_evals(module):
    offending = sorted(t for t in GRAPH[module] if _within(t, OFFLINE))
    assert not offending, f"{module} imports {offending}"


def test_only_cli_and_offline_code_import_the_simulator_or_evals():
    allowed = (*OFFLINE, "persona_sdk.cli")
    offending = {
        m: sorted(t for t in targets if _within(t, OFFLINE))
        for m, targets in GRAPH.items()
        if not _within(m, allowed)
    }
    assert not {m: t for m, t in offending.items() if t}


def test_decoding_never_imports_adapters_or_the_api():
    for module, targets in GRAPH.items():
        if _within(module, ("persona_sdk.decoding",)):
            bad = [
                t for t in targets if _within(t, ("persona_sdk.adapters", "persona_sdk.persona"))
            ]
            assert not bad, f"{module} imports {bad}"


def _cycles() -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles():
    assert _cycles() == []
