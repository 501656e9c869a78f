"""The public API and the layering the design promises."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import plexa

SRC = Path(plexa.__file__).parent

LAYERS = {
    "core": {
        "errors",
        "_states",
        "_spec",
        "_messages",
        "_config",
        "_actor",
        "_paths",
        "_payload",
        "_counters",
        "_protocol",
    },
    "data": {"_links", "_store"},
    "runtime": {"_runtime", "improv", "testing", "_services", "_pool"},
    "nexus": {"_nexus", "_cleanup", "_status", "_server", "_supervisor"},
    "edges": {"cli", "__main__", "_client", "tui"},
}
ORDER = ["core", "data", "runtime", "nexus", "edges"]


def _layer(module: str) -> str | None:
    for layer, names in LAYERS.items():
        if module in names:
            return layer
    return None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("plexa"):
            found.add(node.module.split(".")[1] if "." in node.module else "__init__")
            if node.module == "plexa":
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("plexa.")}
    return found


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages([str(SRC)], "plexa."):
        if info.name != "plexa.__main__":
            importlib.import_module(info.name)


def test_lower_layers_never_import_higher_ones() -> None:
    for path in SRC.glob("*.py"):
        layer = _layer(path.stem)
        if layer is None:
            continue
        for imported in _imports(path):
            other = _layer(imported)
            if other is not None:
                assert ORDER.index(other) <= ORDER.index(layer), (
                    f"{path.name} ({layer}) imports {imported} ({other})"
                )


def test_every_module_is_placed_in_a_layer() -> None:
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    assert modules <= set().union(*LAYERS.values())


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(plexa) if not n.startswith("_")} - {
        m.name for m in pkgutil.iter_modules([str(SRC)])
    }
    assert set(plexa.__all__) - {"__version__"} == public - {"annotations"}
    for name in plexa.__all__:
        assert getattr(plexa, name) is not None


def test_every_public_name_has_a_docstring() -> None:
    for name in plexa.__all__:
        obj = getattr(plexa, name)
        if callable(obj):
            assert obj.__doc__, name
