"""The shape of the code: imports run down the data flow, no cycles, small modules and functions.

Every `import` statement is read with `ast` (function-level and TYPE_CHECKING imports included:
a lazy import is still a dependency), so these tests need nothing imported and run in a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mos_search", "latency", "devices")

# mos_search's units in data-flow order: a unit imports only itself and units before it.
# `mos_search` itself (the package's lazy facade) sits on top and nothing imports it.
UNIT_ORDER = (
    ("constants", "errors"),
    ("files", "settings", "interrupt", "presets", "shipped"),
    ("arch",),
    ("space",),
    ("data",),
    ("models",),
    ("training",),
    ("oracle",),
    ("costs",),
    ("search",),
    ("deploy",),
    ("demo",),
    ("cli",),
)
UNIT_RANK = {unit: rank for rank, units in enumerate(UNIT_ORDER) for unit in units}
# the lower packages: each may import only itself and the ones after it here
PACKAGE_ORDER = ("mos_search", "latency", "devices")

# folders of shipped data files, no code
DATA_UNITS = ("presets", "shipped")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# units over the limits, each with the reason it stays whole
LONG_ALLOWED: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Internal modules `module` imports (a `from X import name` counts X.name when a module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if n in MODULES else base for n in names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mos_search" and len(parts) > 1 else None


def test_every_mos_search_module_belongs_to_a_unit():
    unknown = sorted(
        m for m in MODULES if m.startswith("mos_search.") and _unit(m) not in UNIT_RANK
    )
    assert not unknown, f"add these to UNIT_ORDER (in data-flow order): {unknown}"


def test_imports_run_down_the_data_flow():
    upward = []
    for module, targets in GRAPH.items():
        package = module.split(".")[0]
        for target in targets:
            target_package = target.split(".")[0]
            if PACKAGE_ORDER.index(target_package) < PACKAGE_ORDER.index(package):
                upward.append(f"{module} -> {target} (package {package} is below {target_package})")
            if target == "mos_search":
                upward.append(f"{module} -> mos_search (the package facade is for users only)")
            if package == target_package == "mos_search" and "mos_search" not in (module, target):
                unit, target_unit = _unit(module), _unit(target)
                if target_unit != unit and UNIT_RANK[target_unit] >= UNIT_RANK[unit]:
                    upward.append(f"{module} -> {target} ({unit} may not import {target_unit})")
    assert not upward, "imports against the data flow:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_packages_never_import_mos_search_or_torch_at_module_level():
    offenders = []
    for module, path in MODULES.items():
        if module.split(".")[0] == "mos_search":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: devices import torch lazily
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                offenders += [f"{module}: {n}" for n in names if n and n.split(".")[0] == "torch"]
    assert not offenders, offenders


def _long_units() -> list[str]:
    found = []
    for module, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and module not in LONG_ALLOWED:
            found.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                name = f"{module}.{node.name}"
                if length > MAX_FUNCTION_LINES and name not in LONG_ALLOWED:
                    found.append(f"{name}: {length} lines")
    return found


def test_modules_and_functions_stay_small():
    assert _long_units() == []


SUB_PACKAGES = [
    m
    for m, path in MODULES.items()
    if path.name == "__init__.py"
    and (m in PACKAGES or m.startswith("mos_search."))
    and m.count(".") <= 1
]


def test_the_sub_packages_are_found():
    assert {"mos_search", "mos_search.models", "mos_search.search", "latency"} <= set(SUB_PACKAGES)


@pytest.mark.parametrize("package", SUB_PACKAGES)
def test_every_sub_package_says_what_it_owns(package):
    docstring = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8")))
    assert docstring, f"{package}/__init__.py needs a docstring"
    if package != "mos_search" and _unit(package) not in DATA_UNITS:
        assert "import" in docstring, f"{package}: say what it may import"
