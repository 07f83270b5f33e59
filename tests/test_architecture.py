"""The package's structure is part of its design: layers, no import cycles, no private names
imported across modules, and no global random state (STYLE.md habits 1, 3)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "imsim"


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def test_layers_contract_is_kept():
    """import-linter's layers contract in pyproject.toml (imports inside functions count too)."""
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(REPO / "pyproject.toml")) == 0


def test_the_layers_contract_names_every_subpackage():
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    layers = cfg["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for m in layer.split("|")}
    subpackages = {f"imsim.{p.name}" for p in SRC.iterdir()
                   if p.is_dir() and (p / "__init__.py").exists()}
    top_modules = {f"imsim.{p.stem}" for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert subpackages | top_modules <= named


def _import_graph():
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("imsim")
    return {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}


def _strongly_connected(adj):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(adj[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    """No module imports, directly or through others, a module that imports it."""
    cycles = [c for c in _strongly_connected(_import_graph()) if len(c) > 1]
    assert cycles == []


def test_cycle_finder_finds_a_cycle():
    assert [c for c in _strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()})
            if len(c) > 1] == [["a", "b"]]


def _private_imports(tree: ast.AST, mod: str) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imsim"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{mod}: from {node.module} import {alias.name}")
    return bad


def test_no_private_name_is_imported_across_modules():
    bad = []
    for mod, path in _modules():
        bad += _private_imports(ast.parse(path.read_text()), mod)
    assert bad == []


def test_private_import_check_catches_one():
    tree = ast.parse("from imsim.config.scenario import _Strict\n")
    assert _private_imports(tree, "x") == ["x: from imsim.config.scenario import _Strict"]


GLOBAL_RNG = re.compile(r"\bnp\.random\.(?!Generator\b|Philox\b|SeedSequence\b)[a-z_]+\(|"
                        r"^\s*import random\b|\brandom\.(random|randint|choice|shuffle|seed)\(",
                        re.M)


def test_no_global_or_unkeyed_random_state():
    """Every random number comes from imsim.core.streams (keyed by seed, stream, index)."""
    bad = []
    for mod, path in _modules():
        text = path.read_text()
        if mod == "imsim.core.streams":
            continue
        for m in GLOBAL_RNG.finditer(text):
            bad.append(f"{mod}: {m.group(0).strip()}")
    assert bad == []
