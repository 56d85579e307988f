"""The installed package's import structure, read from its source with `ast` and checked by
importing each module alone:

* no module-level import circle anywhere (imports under `if TYPE_CHECKING:` aside), and in the
  pipeline no import of its own modules inside a function either (that is how circles hide),
  but for an optional extra's engine;
* every module imports alone, in a fresh interpreter (an import that works only after another
  module was imported first fails here); a module of an optional extra may fail only for that
  extra's missing package;
* the boundary: the exporter (and the HTTP application) import nothing of the pipeline but its
  contract module, and the pipeline never imports them.

Modules are found with `pkgutil.walk_packages` over every package the project installs (the
folders pyproject.toml maps into `scribewatch`), so a new subpackage is checked the day it
appears.
"""

from __future__ import annotations

import ast
import concurrent.futures
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.harness import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Packages that see the pipeline through its contract only.
OBSERVERS = ("scribewatch.exporter", "scribewatch.web")
# (importer, imported) inside a function, allowed: the optional extra's engine, loaded only when
# a PostgreSQL URL is opened (psycopg is the `postgres` extra).
LAZY_EXTRAS = {("scribewatch.pipeline.store", "scribewatch.pipeline.store.postgres")}


def _modules() -> dict[str, Path]:
    """Every module of the installed package (name -> source file), `__main__` aside."""
    roots = sorted({"scribewatch", *SETUPTOOLS.get("package-dir", {})} - {""})
    found: dict[str, Path] = {}
    for root in roots:
        spec = importlib.util.find_spec(root)
        found[root] = Path(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, root + "."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                found[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body, top: bool):
    """(statement, at module level?) for every import statement; `if TYPE_CHECKING:` blocks
    are left out."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top
        elif isinstance(node, ast.If) and _type_checking(node):
            yield from _statements(node.orelse, top)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _statements(node.body, False)
        elif isinstance(node, ast.ClassDef):
            yield from _statements(node.body, top)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _statements(getattr(node, field, []) or [], top)


def _imports(name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) of one module, made absolute: `from . import x`
    names the module x when it is one, else the package."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    out = []
    for node, top in _statements(tree.body, True):
        if isinstance(node, ast.Import):
            out += [(a.name, top) for a in node.names]
            continue
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            out.append((sub if sub in MODULES else module, top))
    return out


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, top in _imports(name) if top and m in MODULES and m != name}
            for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_subpackage_is_found_and_installed():
    names = set(MODULES)
    for expected in ("scribewatch.cli", "scribewatch.pipeline.contract",
                     "scribewatch.pipeline.notify.sender", "scribewatch.pipeline.store.postgres",
                     "scribewatch.pipeline.daemon.service", "scribewatch.exporter.catalog"):
        assert expected in names
    packages = {n for n in names if _is_package(n)}
    # a package the wheel would leave out (tests/system/test_packaging.py installs the wheel)
    assert packages <= set(SETUPTOOLS["packages"]), packages - set(SETUPTOOLS["packages"])


def test_no_import_circle_at_module_level():
    assert _cycles(_graph()) == []


def test_the_circle_check_sees_a_circle():
    """A guard on the guard."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_pipeline_imports_its_own_modules_at_module_level():
    """An import inside a function is how a circle hides: in the pipeline only the optional
    extra's engine is imported late."""
    late = {(name, m) for name in MODULES if name.startswith("scribewatch.pipeline")
            for m, top in _imports(name) if not top and m.startswith("scribewatch")}
    assert late <= LAZY_EXTRAS, late - LAZY_EXTRAS


def _extras_packages() -> set[str]:
    """The import names of the optional extras' requirements (`psycopg[binary]` -> psycopg)."""
    names = set()
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        if extra == "test":
            continue
        for requirement in requirements:
            names.add(re.split(r"[\[<>=;! ]", requirement)[0].replace("-", "_").lower())
    return names


_PROBE = """
import importlib, sys
try:
    importlib.import_module(sys.argv[1])
except ModuleNotFoundError as e:
    print("missing", e.name); sys.exit(3)
"""


def _import_alone(name: str) -> tuple[str, int, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True, text=True,
                          cwd="/", env=env, timeout=120)
    return name, done.returncode, (done.stdout + done.stderr).strip()


def test_every_module_imports_alone_in_a_fresh_interpreter():
    extras = _extras_packages()
    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_import_alone, sorted(MODULES)))
    failed = []
    for name, code, output in results:
        if code == 3 and output.split()[-1].split(".")[0].lower() in extras:
            continue   # a module of an optional extra, that extra not installed
        if code != 0:
            failed.append(f"{name}: {output[-400:]}")
    assert not failed, "\n".join(failed)
    assert len(results) > 60


@pytest.mark.parametrize("observer", OBSERVERS)
def test_the_observers_import_only_the_pipelines_contract(observer):
    names = [n for n in MODULES if n == observer or n.startswith(observer + ".")]
    if observer == "scribewatch.exporter":
        assert len(names) > 5
    for name in names:
        for imported, _ in _imports(name):
            if imported.startswith("scribewatch.pipeline"):
                assert imported == "scribewatch.pipeline.contract", f"{name} imports {imported}"


def test_the_pipeline_never_imports_the_observers():
    names = [n for n in MODULES if n.startswith("scribewatch.pipeline")]
    assert len(names) > 40
    for name in names:
        for imported, _ in _imports(name):
            assert not imported.startswith(OBSERVERS), f"{name} imports {imported}"
            assert not imported.startswith(("prometheus_client", "scribewatch.cli")), \
                f"{name} imports {imported}"


def test_the_check_sees_relative_imports():
    """A guard on the guard: the parser resolves what these modules really import."""
    assert ("scribewatch.pipeline.contract", True) in _imports("scribewatch.exporter.gpu")
    assert ("scribewatch.pipeline.contract", True) in _imports("scribewatch.pipeline.errors")
    assert ("scribewatch.pipeline.store.interface", True) in \
        _imports("scribewatch.pipeline.store.sql")
    assert ("scribewatch.pipeline.store.postgres", False) in _imports("scribewatch.pipeline.store")
    # `if TYPE_CHECKING:` imports are no arrows
    assert all(m != "scribewatch.pipeline.media.reader"
               for m, _ in _imports("scribewatch.pipeline.skip_policy"))
