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

# What each unit of mos_search may import besides itself, following the data flow (each
# sub-package's docstring says the same). `mos_search` itself, the package's lazy facade, sits on
# top and nothing imports it. `latency` and `devices` are the lower packages.
CORE = {"constants", "errors", "files", "settings", "interrupt"}
MEASURING = {"latency", "devices"}
_MODELS = CORE | {"arch", "space", "data", "models"}
ALLOWED: dict[str, set[str]] = {
    "constants": set(),
    "errors": set(),
    "files": {"constants", "errors", "devices"},  # devices.text: the one UTF-8 decoder
    "settings": {"constants", "errors", "devices"},  # devices.text: the did-you-mean hint
    "interrupt": {"constants", "errors"},
    "presets": set(),
    "shipped": set(),
    "arch": CORE,
    "space": CORE | {"arch"},
    "interop": CORE | {"arch", "space"},  # other toolkits' formats: HAT SubTransformer configs
    "data": CORE | {"devices"},  # devices.text: the one UTF-8 decoder, line by line
    "models": CORE | {"arch", "space", "data"},
    "training": _MODELS,
    "oracle": _MODELS,
    "costs": _MODELS | MEASURING,
    "search": _MODELS | {"oracle", "costs"} | MEASURING,
    "deploy": _MODELS | {"training", "oracle", "costs", "search"} | MEASURING,
    "demo": _MODELS | {"training", "oracle", "costs", "search", "deploy"} | MEASURING,
    "fidelity": _MODELS | {"training", "oracle", "costs"} | MEASURING,  # oracle vs standalone, size
    "cli": _MODELS
    | {"interop", "training", "oracle", "costs", "search", "deploy", "demo", "fidelity"}
    | MEASURING,
}
LOWER_PACKAGES = {"latency": {"devices"}, "devices": set()}

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


def _imports(module: str, source: str, is_package: bool = False) -> set[str]:
    """Internal modules `module` imports (a `from X import name` counts X.name when a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
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


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


GRAPH = {
    module: _imports(module, _source(path), path.name == "__init__.py")
    for module, path in MODULES.items()
}


def _with_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ too: add those edges (but not to the
    importer's own packages, which are running already, nor to the lazy `mos_search` facade)."""
    out = {}
    for module, targets in graph.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges = set(targets)
        for target in targets:
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in MODULES and parent not in own:
                    edges.add(parent)
        out[module] = edges
    return out


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mos_search" and len(parts) > 1 else None


def test_every_mos_search_module_belongs_to_a_unit():
    unknown = sorted(m for m in MODULES if m.startswith("mos_search.") and _unit(m) not in ALLOWED)
    assert not unknown, f"add these to ALLOWED (with what they may import): {unknown}"


def _against_the_flow(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        package, unit = module.split(".")[0], _unit(module)
        for target in targets:
            target_package, target_unit = target.split(".")[0], _unit(target)
            if target == "mos_search":
                found.append(f"{module} -> mos_search (the package facade is for users only)")
            elif package in LOWER_PACKAGES:
                if target_package != package and target_package not in LOWER_PACKAGES[package]:
                    found.append(f"{module} -> {target} ({package} may not import it)")
            elif module == "mos_search" or target_unit == unit:
                continue
            elif (target_unit or target_package) not in ALLOWED[unit]:
                found.append(f"{module} -> {target} ({unit} may not import it)")
    return sorted(found)


def test_imports_run_down_the_data_flow():
    found = _against_the_flow(GRAPH)
    assert not found, "imports against the data flow:\n" + "\n".join(found)


def test_an_upward_import_is_found():
    graph = {
        "mos_search.data.corpus": {"mos_search.models.build"},
        "devices.base": {"latency.protocol"},
        "mos_search.models.build": {"mos_search.data.corpus"},
    }
    assert _against_the_flow(graph) == [
        "devices.base -> latency.protocol (devices may not import it)",
        "mos_search.data.corpus -> mos_search.models.build (data may not import it)",
    ]


@pytest.mark.parametrize(
    "module, source, expected",
    [
        (
            "mos_search.search.run",
            "from mos_search.search import config",
            {"mos_search.search.config"},
        ),
        ("mos_search.search.run", "from . import problem", {"mos_search.search.problem"}),
        ("mos_search.search", "from .run import open_run", {"mos_search.search.run"}),
        ("mos_search.demo", "def f():\n    import mos_search.files as f", {"mos_search.files"}),
        ("mos_search.cli.main", "from mos_search.cli import data", {"mos_search.cli.data"}),
        ("mos_search.space", "from numpy import array\nimport os", set()),
    ],
)
def test_the_import_reader(module, source, expected):
    assert _imports(module, source, is_package=MODULES[module].name == "__init__.py") == expected


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
    assert _cycles(_with_parent_packages(GRAPH)) == []


def test_a_cycle_through_a_package_init_is_found():
    """models/__init__ importing the oracle, whose scoring imports models.bert: importing
    models.bert runs models/__init__, so this is a cycle though no module imports itself back."""
    graph = {
        "mos_search.models": {"mos_search.oracle.scoring"},
        "mos_search.oracle.scoring": {"mos_search.models.bert"},
        "mos_search.models.bert": set(),
    }
    assert _cycles(graph) == []
    assert _cycles(_with_parent_packages(graph)) == [
        ["mos_search.models", "mos_search.oracle.scoring"]
    ]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _module_level_imports(tree: ast.Module) -> list[str]:
    """Modules imported when the module is imported: its body, and `if`/`try` blocks in it."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.If | ast.Try):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            todo += [n for handler in getattr(node, "handlers", []) for n in handler.body]
    return found


def test_lower_packages_import_torch_lazily():
    """`latency` and `devices` run on a deployment target without torch (devices that need it
    import it when used)."""
    offenders = [
        f"{module}: {name}"
        for module, path in MODULES.items()
        if module.split(".")[0] in LOWER_PACKAGES
        for name in _module_level_imports(ast.parse(_source(path)))
        if name.split(".")[0] == "torch"
    ]
    assert not offenders, offenders


def test_module_level_imports_look_inside_if_and_try():
    tree = ast.parse(
        "try:\n    import torch\nexcept ImportError:\n    pass\ndef f():\n    import x"
    )
    assert _module_level_imports(tree) == ["torch"]


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
