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
    # From outside the checkout, with the installed copy first on the path (the venv's own
    # dependencies still import: the exporter needs prometheus-client).
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True, text=True,
                         capture_output=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)}).stdout.splitlines()
    assert out[0] == str(site / "scribewatch" / "pipeline" / "__init__.py")
    assert out[1] == str(site / "scribewatch" / "exporter" / "__init__.py")
    assert out[2] == "None None None", "a generic top-level package is importable"
    assert out[3] == "True", "the status page's HTML is not in the wheel"
