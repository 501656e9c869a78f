"""The public API and the layering the design promises."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import plexa

SRC = Path(plexa.__file__).parent

ORDER = ["core", "data", "runtime", "launch", "nexus", "edges"]
"""The layers, lowest first: a module may import only from its own layer or lower ones."""
TOP_LEVEL = {
    "errors": "core",
    "improv": "runtime",
    "testing": "runtime",
    "recording": "data",
    "replay": "runtime",
    "jobs": "runtime",
    "__main__": "edges",
    "__init__": "edges",
    "examples": "edges",
}
"""Public modules kept at the top (stable import paths for users), and the layer each belongs to."""


def _layer(module: str) -> str | None:
    """The layer of a dotted module name under ``plexa`` (``plexa.data.links`` -> ``data``)."""
    parts = module.split(".")
    if parts[0] != "plexa":
        return None
    if len(parts) == 1:
        return "edges"
    return parts[1] if parts[1] in ORDER else TOP_LEVEL.get(parts[1])


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts)


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
    """Dotted names of the plexa modules ``path`` imports at run time."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("plexa"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if alias.name in ORDER}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("plexa")}
    return found


def _sources() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "examples" not in p.parts]


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages([str(SRC)], "plexa."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def test_lower_layers_never_import_higher_ones() -> None:
    for path in _sources():
        name = _module_name(path)
        layer = _layer(name)
        assert layer is not None, name
        for imported in _imports(path):
            other = _layer(imported)
            if other is not None and imported != "plexa":
                assert ORDER.index(other) <= ORDER.index(layer), (
                    f"{name} ({layer}) imports {imported} ({other})"
                )


def test_every_module_sits_in_a_layer_folder_or_is_a_known_public_module() -> None:
    for path in _sources():
        rel = path.relative_to(SRC)
        if len(rel.parts) == 1:
            assert path.stem in TOP_LEVEL, f"{rel}: put it in a layer folder ({', '.join(ORDER)})"
        else:
            assert rel.parts[0] in ORDER, f"{rel}: {rel.parts[0]} is not a layer"


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


def test_every_module_reads_in_one_sitting() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, f"modules over 500 lines (split them along a seam): {long}"
