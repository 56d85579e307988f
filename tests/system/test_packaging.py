"""What `pip install scribewatch` puts on a machine: one import package, `scribewatch`, built from
the folders pyproject.toml maps into it (pipeline/, exporter/, web/); no generic top-level name
such as `pipeline`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

from tests.harness import REPO


def test_the_wheel_installs_one_package_and_no_generic_names(tmp_path):
    # Built from a copy of what the build reads, so setuptools' build/ lands in tmp_path, and
    # without build isolation: the test extra brings setuptools, so nothing is downloaded.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    for folder in sorted({path.split("/")[0] for path in package_dir.values()}):
        shutil.copytree(REPO / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("scribewatch-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"scribewatch"}

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    probe = (
        "import importlib.util, scribewatch.pipeline.contract, scribewatch.exporter, sys\n"
        "import scribewatch.web\n"
        "import scribewatch.pipeline.notify  # a sub-package: listed in pyproject's packages\n"
        "print(scribewatch.pipeline.__file__)\n"
        "print(scribewatch.exporter.__file__)\n"
        "print(importlib.util.find_spec('pipeline'), importlib.util.find_spec('exporter'),\n"
        "      importlib.util.find_spec('web'))\n"
        # The status page is package data: the installed server finds it.
        "from scribewatch.web.status_page import Page\n"
        "print(b'<title>scribewatch</title>' in Page().body)\n")
    def installed(code: str) -> str:
        """`code`'s output from outside the checkout, the installed copy first on the path (the
        venv's own dependencies still import: the exporter needs prometheus-client)."""
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, text=True,
                              capture_output=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(site)}).stdout

    out = installed(probe).splitlines()
    assert out[0] == str(site / "scribewatch" / "pipeline" / "__init__.py")
    assert out[1] == str(site / "scribewatch" / "exporter" / "__init__.py")
    assert out[2] == "None None None", "a generic top-level package is importable"
    assert out[3] == "True", "the status page's HTML is not in the wheel"

    # Every module is in the wheel and imports from it: a subpackage missing from pyproject's
    # `packages` would be left out (its files absent) and fail here.
    walk = ("import importlib, pkgutil, scribewatch\n"
            "names = [m.name for m in pkgutil.walk_packages(scribewatch.__path__, 'scribewatch.')"
            " if not m.name.endswith('__main__')]\n"
            "for name in names:\n"
            "    module = importlib.import_module(name)\n"
            "    assert module.__file__.startswith(scribewatch.__path__[0]), name\n"
            "print(len(names))\n")
    imported = installed(walk)
    sources = [p for folder in ("scribewatch", "pipeline", "exporter", "web")
               for p in (REPO / folder).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")]
    assert int(imported) >= len(sources), (imported, len(sources))
