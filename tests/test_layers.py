"""The package's layer rule, read from the imports of every module (function-level imports included).

Layers, lowest first; a module may import its own layer and those below it,
never one above, and the imports inside one layer form no cycle. No module
imports a private name (``_x``) from another alloyflow module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import alloyflow

ROOT = Path(alloyflow.__file__).parent

LAYERS = [
    "alloyflow.structures",
    "alloyflow.calculators",
    "alloyflow.analysis",
    "alloyflow.engine",
    "alloyflow.workflows.schemas",
    "alloyflow.io",
    "alloyflow.workflows.jobs",
    "alloyflow.ml",
    "alloyflow.workflows.flows",
    "alloyflow.commands",
    "alloyflow.cli",
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int | None:
    best = None
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            best = i
    return best


def _resolve(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rsplit(".", 1)[0] if "." in target else ""
    return target or None


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every alloyflow import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("alloyflow"):
                    found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("alloyflow"):
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    if sub in MODULES:  # ``from pkg import module``
                        found.append((sub, [], node.lineno))
                    else:
                        found.append((mod, [alias.name], node.lineno))
    return found


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if layer_of(m) is None and m not in ("alloyflow", "alloyflow.workflows")]
    assert not unplaced, f"modules outside every layer: {unplaced}"


def test_no_module_imports_a_higher_layer():
    bad = []
    for module in MODULES:
        mine = layer_of(module)
        if mine is None:
            continue
        for target, _, line in imports(module):
            resolved = _resolve(target)
            theirs = layer_of(resolved) if resolved else None
            if theirs is not None and theirs > mine:
                bad.append(f"{module}:{line} imports {resolved} ({LAYERS[theirs]} is above {LAYERS[mine]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in imports(module):
            resolved = _resolve(target)
            # a package __init__ that only re-exports is not a dependency of its submodules
            if resolved and resolved != module and not module.startswith(resolved + "."):
                graph[module].add(resolved)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_across_modules():
    bad = []
    for module in MODULES:
        for target, names, line in imports(module):
            for name in names:
                if name.startswith("_") and _resolve(target) != module:
                    bad.append(f"{module}:{line} imports {target}.{name}")
    assert not bad, "\n".join(bad)


def test_layer_rule_catches_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a structures module importing a flow is reported."""
    fake = tmp_path / "alloyflow" / "structures" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from alloyflow.workflows.flows.hull import HullMaker\n")
    monkeypatch.setitem(MODULES, "alloyflow.structures.bad", fake)
    target, _, _ = imports("alloyflow.structures.bad")[0]
    assert layer_of(_resolve(target)) > layer_of("alloyflow.structures.bad")
