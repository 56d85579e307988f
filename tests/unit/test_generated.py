"""Every committed generated file is what its generator makes now, and `make generate` runs
every generator. One test per generator: a stale file names the command that fixes it."""

from __future__ import annotations

import re

import pytest

from tests.harness import REPO


def _mixin() -> dict[str, str]:
    from mixin import __main__ as mixin_cli

    return mixin_cli.outputs()


def _metrics_doc() -> dict[str, str]:
    from scribewatch.exporter import docs

    return {docs.DOC_PATH.relative_to(REPO).as_posix(): docs.render()}


def _http_doc() -> dict[str, str]:
    from scribewatch.web import docs

    return {docs.DOC_PATH.relative_to(REPO).as_posix(): docs.render()}


def _readme_and_example() -> dict[str, str]:
    from scribewatch.pipeline import docs

    return docs.outputs()


def _bench_report() -> dict[str, str]:
    from bench import report

    return {report.DOC.relative_to(REPO).as_posix():
            report.render(report.DOC.read_text(), report.load_results())}


# module `make generate` runs -> what it would write (repository-relative path -> text)
GENERATORS = {
    "mixin": _mixin,
    "scribewatch.exporter.docs": _metrics_doc,
    "scribewatch.web.docs": _http_doc,
    "scribewatch.pipeline.docs": _readme_and_example,
    "bench.report": _bench_report,
}


@pytest.mark.parametrize("module", GENERATORS)
def test_committed_files_are_the_generators_output(module):
    outputs = GENERATORS[module]()
    assert outputs
    stale = [rel for rel, text in outputs.items()
             if not (REPO / rel).exists() or (REPO / rel).read_text() != text]
    assert not stale, f"out of date: {stale}; run `make generate` (python -m {module})"


def test_make_generate_runs_every_generator():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^\.PHONY:.*\bgenerate\b", makefile, re.M)
    recipe = re.search(r"^generate:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no generate target"
    modules = re.findall(r"^\t\$\(BIN\)/python -m ([\w.]+)$", recipe.group(1), re.M)
    assert modules == list(GENERATORS)
