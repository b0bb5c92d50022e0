"""The package's layers, read from the source with ``ast`` (nothing is imported):

* the core (every module of ``biasvar/`` outside ``biasvar/studies/``) never imports ``biasvar.studies``,
  not even inside a function;
* the modules of ``biasvar`` import each other without a cycle. An import inside a function counts (it
  is a dependency all the same, only later); what does not is lazy attribute access (the names the
  package's ``__getattr__`` looks up in a table of strings) and the blocks under ``if TYPE_CHECKING:``,
  which never run. Importing ``a.b.c`` also runs the packages ``a.b`` and ``a`` (except those that hold
  the importing module, which are already being imported).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "biasvar"
STUDIES = "biasvar.studies"

def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, name: str, modules: dict[str, Path]) -> str:
    """The module an ``from ... import`` names, relative imports resolved against ``name``."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if _is_package(name, modules) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _under(node: ast.AST, kind: type) -> bool:
    return any(isinstance(n, kind) for n in ast.walk(node))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, name: str, modules: dict[str, Path], *, type_checking: bool = True) -> set[str]:
    """Every module an import statement of ``tree`` names, inside functions too (``from m import x``:
    ``m.x`` where that is a module, else ``m``); ``type_checking=False`` leaves out ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, name, modules)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _runs(target: str, importer: str) -> set[str]:
    """What importing ``target`` runs: it and its packages, less the packages that hold ``importer``."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    holders = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    return chain - holders


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the ``biasvar`` modules its imports run (module- and function-level; not TYPE_CHECKING)."""
    modules = _modules(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for target in _imports(tree, name, modules, type_checking=False):
            edges |= {m for m in _runs(target, name) if m in modules and m != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[m1, ..., mk, m1]``, each importing the one before), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# -- the tests ---------------------------------------------------------------------------------------


def test_core_never_imports_the_studies():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if _in(name, STUDIES):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        bad += [f"{name} imports {t}" for t in sorted(_imports(tree, name, modules))
                if _in(t, STUDIES)]
    assert not bad, "the core imports the studies (they sit above it):\n" + "\n".join(bad)


def test_no_import_cycle_between_biasvar_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "modules that import each other in a cycle: " + " <- ".join(cycle)


# -- the checks catch what they are for (on a small package written here) ----------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "biasvar"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_function_level_import_of_the_studies_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "core.py": "def f():\n    from .studies.demo import run\n    return run\n",
        "studies/__init__.py": "",
        "studies/demo.py": "from biasvar.core import f\n",
    })
    tree = ast.parse((root / "core.py").read_text())
    assert _imports(tree, "biasvar.core", _modules(root)) == {"biasvar.studies.demo"}


@pytest.mark.parametrize("files,cycle", [
    ({"a.py": "from biasvar.pkg.c import x\n",  # importing pkg.c runs pkg/__init__, which imports pkg.b
      "pkg/__init__.py": "from biasvar.pkg.b import y\n",
      "pkg/b.py": "import biasvar.a\ny = 1\n",
      "pkg/c.py": "x = 1\n"},
     {"biasvar.a", "biasvar.pkg", "biasvar.pkg.b"}),
    ({"lazy.py": "def g():\n    import biasvar.lazy2\n", "lazy2.py": "from . import lazy\n"},
     {"biasvar.lazy", "biasvar.lazy2"}),
    ({"typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import biasvar.typed2\n",
      "typed2.py": "from . import typed\n"},
     None),
    ({"__init__.py": "def __getattr__(name):\n    import importlib\n\n"
                     "    return getattr(importlib.import_module('biasvar.a'), name)\n",
      "a.py": "import biasvar\n"},
     None),
])
def test_cycles_through_a_package_init_or_a_function_are_found(tmp_path, files, cycle):
    """Not through TYPE_CHECKING, nor through lazy attribute access (a module named in a string)."""
    found = find_cycle(import_graph(_package(tmp_path, {"__init__.py": "", **files})))
    assert (found if found is None else set(found)) == cycle


def test_a_module_imports_its_own_package_without_a_cycle(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "pkg/__init__.py": "from biasvar.pkg.b import y\n",
                               "pkg/b.py": "from biasvar.pkg import c\ny = 1\n", "pkg/c.py": ""})
    assert import_graph(root)["biasvar.pkg.b"] == {"biasvar.pkg.c"}  # pkg is already being imported
