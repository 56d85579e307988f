"""Generated documentation stays in step with the code it describes."""

import re
from pathlib import Path

from scribewatch.pipeline import config, docs
from scribewatch.pipeline.contract import FAILURES, SKIPS
from tests.harness import REPO

# That the README's tables and scribewatch.example.yaml are what pipeline/docs.py makes now:
# tests/unit/test_generated.py.


def test_example_config_means_the_defaults():
    example = REPO / "scribewatch.example.yaml"
    assert config.load(example, environ={}) == config.load(None, environ={})


def test_readme_tables_hold_every_setting_and_reason():
    tables = docs.reference_markdown() + docs.reasons_markdown()
    for s in config.SCHEMA:
        assert f"| `{s.key}` | `{config.env_name(s.key)}` |" in tables, s.key
    for r in FAILURES:
        assert f"| `{r.code}` | " in tables and r.when in tables, r.code
    for r in SKIPS:
        assert f"| `{r.code}` | {r.when} |" in tables, r.code
    readme = (REPO / "README.md").read_text()
    assert "| `internal_error` | any | yes |" in readme        # a reason of every stage
    assert "| `vanished` | probe | no |" in readme


def test_generator_check_mode(tmp_path, monkeypatch):
    """`--check` exits 1 on a stale table and writes nothing; a plain run rewrites it."""
    for rel in ("README.md", "scribewatch.example.yaml"):
        (tmp_path / rel).write_text((REPO / rel).read_text())
    monkeypatch.setattr(docs, "REPO", tmp_path)
    assert docs.main(["--check"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `disk_full` | write | yes |",
                                                 "| `disk_full` | write | no |"))
    stale = readme.read_text()
    assert docs.main(["--check"]) == 1 and readme.read_text() == stale
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
    assert "| `disk_full` | write | yes |" in readme.read_text()
    assert docs.main(["--bogus"]) == 2


def test_make_targets_are_the_documented_two():
    makefile = (REPO / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _documented_commands():
    """(file, sub-command, flags) of every `scribewatch …` command in a code span or block."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for snippet in code:
            for line in snippet.splitlines():
                command = r"(?<![\w/.-])scribewatch (?=([a-z][\w-]*|--[a-z][\w-]*))"
                for m in re.finditer(command, line):
                    word = m.group(1)
                    if word == "scribewatch" or line[:m.start()].endswith("-u "):
                        continue   # the compose service (`exec scribewatch scribewatch …`), a unit
                    rest = line[m.end() + len(word):].split(" | ")[0]
                    if rest.startswith(" / "):   # a list of sub-commands: `run / transcribe / …`
                        for other in [word] + rest.split(" / ")[1:]:
                            yield path.name, other.strip(), []
                        continue
                    yield path.name, word, re.findall(r"--[a-z][a-z-]*", rest)


def test_documented_commands_exist():
    """Every command the README and docs show is one the CLI accepts, flags included."""
    import argparse

    from scribewatch.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    seen = 0
    for name, word, flags in _documented_commands():
        seen += 1
        if word == "--version":
            continue
        assert word in sub.choices, f"{name}: `scribewatch {word}` is no sub-command"
        known = sub.choices[word]._option_string_actions
        for flag in flags:
            assert flag in known, f"{name}: `scribewatch {word}` has no {flag}"
    assert seen > 20


def test_docs_say_where_the_command_is():
    """`make run` puts `scribewatch` in .venv/bin only: the README says so before its first
    command, and the runbook before its tools; in the stack it is inside the container."""
    readme = (REPO / "README.md").read_text()
    first_use = min(readme.index(f"scribewatch {c}") for c in ("status", "history", "retry"))
    assert -1 < readme.find(". .venv/bin/activate") < first_use
    assert "docker compose exec scribewatch scribewatch" in readme
    runbook = (REPO / "mixin" / "runbook.md").read_text()
    assert -1 < runbook.find(". .venv/bin/activate") < runbook.index("`scribewatch status")
    assert "docker compose exec scribewatch" in runbook
    assert "$(BIN)/scribewatch" in (REPO / "Makefile").read_text()


def _documented_modules() -> set[str]:
    """The files docs/architecture.md's module table names: `folder/x.py`, and after it on the
    same row bare `y.py` names in that folder (`scribewatch/commands_store.py`, `common.py`)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## The modules"):]
    section = section[:section.index("\n## ", 1)]
    named = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split(" | ")[0]
        folder = None
        for span in re.findall(r"`([^`]+\.py)`", first):
            if "/" in span:
                folder = span.rpartition("/")[0]
                named.add(span)
            elif folder:
                named.add(f"{folder}/{span}")
    return named


def test_every_module_has_a_row_in_the_architecture_doc():
    import importlib.util
    import pkgutil
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    files = set()
    for root in {"scribewatch", *setuptools.get("package-dir", {})} - {""}:
        spec = importlib.util.find_spec(root)
        files.add(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, root + "."):
            files.add(importlib.util.find_spec(info.name).origin)
    modules = {str(Path(f).relative_to(REPO)) for f in files}
    assert len(modules) > 60
    missing = modules - _documented_modules()
    assert not missing, f"docs/architecture.md's module table lacks {sorted(missing)}"
    stale = {m for m in _documented_modules() - modules if not (REPO / m).exists()}
    assert not stale, f"docs/architecture.md names modules that are gone: {sorted(stale)}"
