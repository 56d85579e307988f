"""The two packages' boundary: the exporter imports nothing of the pipeline but its contract
module, and the pipeline never imports the exporter (read from the source with `ast`)."""

from __future__ import annotations

import ast

from tests.harness import REPO


def _imports(path) -> list[str]:
    """What a file imports, made absolute (`..pipeline.x` in exporter/: scribewatch.pipeline.x)."""
    package = f"scribewatch.{path.parent.name}"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            # `from ..pipeline import config` imports scribewatch.pipeline.config
            names += [f"{module}.{a.name}" if module in ("scribewatch.pipeline",
                                                         "scribewatch.exporter") else module
                      for a in node.names]
    return names


def _touches(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".") or name == package.split(".")[-1] \
        or name.startswith(package.split(".")[-1] + ".")


def test_the_exporter_imports_only_the_pipelines_contract():
    files = sorted((REPO / "exporter").glob("*.py"))
    assert len(files) > 5
    for path in files:
        for name in _imports(path):
            if _touches(name, "scribewatch.pipeline"):
                assert name == "scribewatch.pipeline.contract", f"{path.name} imports {name}"


def test_the_pipeline_never_imports_the_exporter():
    files = sorted((REPO / "pipeline").glob("*.py"))
    assert len(files) > 5
    for path in files:
        for name in _imports(path):
            assert not _touches(name, "scribewatch.exporter"), f"{path.name} imports {name}"
            assert not name.startswith(("prometheus_client", "scribewatch.cli")), \
                f"{path.name} imports {name}"


def test_the_check_sees_relative_imports():
    """A guard on the guard: the parser resolves what these two files really import."""
    assert "scribewatch.pipeline.contract" in _imports(REPO / "exporter" / "gpu.py")
    assert "scribewatch.pipeline.contract" in _imports(REPO / "pipeline" / "errors.py")


def test_the_command_line_and_exporter_files_stay_under_400_lines():
    for path in sorted([*(REPO / "scribewatch").glob("*.py"), *(REPO / "exporter").glob("*.py"),
                        *(REPO / "pipeline").glob("con*.py"), REPO / "pipeline" / "docs.py"]):
        assert len(path.read_text().splitlines()) <= 400, path
