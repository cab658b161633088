"""The import rules of docs/architecture.md, checked on every module's ``import`` statements.

Each module belongs to a layer; a layer imports only the layers listed for it in ``MAY_IMPORT``
(function-level and ``TYPE_CHECKING`` imports count too), and the imports that run (module- and
function-level) form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emolens"

#: The ground floor: contracts every layer shares (decoder, boxes, crops, predictor, errors,
#: labels, atomic files, limits, progress, figures). It imports only the standard library and numpy,
#: OpenCV, Pillow and rich (and matplotlib inside the functions of ``figures``).
GROUND = {"errors", "limits", "files", "io", "labels", "images", "boxes", "preprocess", "predictor", "progress", "age",
          "figures"}

MAY_IMPORT: dict[str, set[str]] = {
    "ground": {"ground"},
    "data": {"ground", "data"},
    "inference": {"ground", "inference"},
    "models": {"ground", "data", "inference", "models"},
    "evaluation": {"ground", "data", "inference", "models", "evaluation"},
    "training": {"ground", "data", "inference", "models", "evaluation", "training"},
    "apps": {"ground", "data", "inference", "models", "evaluation", "training", "apps", "facade"},
    "facade": {"ground", "inference"},  # emolens/__init__.py: the names of ``from emolens import ...``
    "entry": {"apps"},  # emolens/__main__.py
}
#: Third-party packages a layer must never import (the torch-free runtime; data's torch modules are named).
#: Ray and pyarrow (the ``[batch]`` extra) belong to ``apps/batch/`` alone: nothing below the apps needs them.
FORBIDDEN = {"ground": {"torch", "onnx", "ray", "pyarrow"}, "inference": {"torch", "onnx", "ray", "pyarrow"},
             "data": {"torch", "ray", "pyarrow"}}
TORCH_DATA_MODULES = {"emolens.data.augment", "emolens.data.loader"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "facade"
    if parts[1] == "__main__":
        return "entry"
    if parts[1] in GROUND:
        return "ground"
    if parts[1] in MAY_IMPORT:
        return parts[1]
    raise AssertionError(f"{module}: in no layer; add it to GROUND or MAY_IMPORT in {Path(__file__).name} "
                         f"and to docs/architecture.md")


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")


def imports(module: str, runtime_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) of every import in ``module``; ``from A import b`` also yields ``A.b``
    when that is a module. ``runtime_only``: only the imports that run, at load or inside a
    function (not those under ``if TYPE_CHECKING:``, which exist for annotations only)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                skipped |= {id(n) for n in ast.walk(node)}
    nodes = [n for n in ast.walk(tree) if id(n) not in skipped]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.append((base, node.lineno))
            found += [(f"{base}.{a.name}", node.lineno) for a in node.names if f"{base}.{a.name}" in MODULES]
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_import_only_their_own_layer_or_below(module: str) -> None:
    own = layer(module)
    problems = []
    for target, line in imports(module):
        top = target.split(".")[0]
        if top == "emolens" and target in MODULES and layer(target) not in MAY_IMPORT[own]:
            problems.append(f"line {line}: {target} ({layer(target)})")
        if top in FORBIDDEN.get(own, set()) and module not in TORCH_DATA_MODULES:
            problems.append(f"line {line}: {target} (the {own} layer stays free of {top})")
    assert not problems, (f"{MODULES[module]} ({own}; may import {', '.join(sorted(MAY_IMPORT[own]))}) "
                          f"imports upward or sideways: " + "; ".join(problems))


def test_no_import_cycles() -> None:
    """No cycle among the imports that run, function-level ones included (a module importing its
    package, which imports it back inside a function, is a cycle too)."""
    graph = {m: sorted({t for t, _ in imports(m, runtime_only=True) if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
