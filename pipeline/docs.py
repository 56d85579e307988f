"""`python -m scribewatch.pipeline.docs [--check]`: the README's config and reason tables and
scribewatch.example.yaml, from pipeline/config.py and pipeline/contract.py.

A development tool (`make generate`), never imported by the daemon. `--check` writes nothing and
exits 1 when a committed file differs from what it would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from . import config
from .contract import (
    API_REJECTIONS,
    ASR_OUTPUTS,
    FAILURE_LABELS,
    FAILURES,
    OPENAI_OUTPUTS,
    SKIPS,
    STAGES,
)
from .settings import AUTO

REPO = Path(__file__).resolve().parent.parent
COMMAND = "`python -m scribewatch.pipeline.docs` (make generate)"

# README regions: name -> (the file it is generated from, render function). The text between
# `<!-- name: … -->` and `<!-- /name -->` is replaced, the opening marker included.
REGIONS = {
    "config-reference": ("pipeline/config.py", lambda: reference_markdown()),
    "reasons": ("pipeline/contract.py", lambda: reasons_markdown()),
    "api-outputs": ("pipeline/subtitles/formats.py", lambda: api_outputs_markdown()),
}


def _yaml_value(value, kind: str = "") -> str:
    if value is None and kind == "autoint":   # left to the daemon
        return AUTO
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def reference_markdown() -> str:
    """The README's config reference table, generated so it cannot drift."""
    rows = ["| key | env | default | meaning |", "| --- | --- | --- | --- |"]
    for s in config.SCHEMA:
        default = "(see below)" if s.key == "include_extensions" else _yaml_value(s.default, s.kind)
        choices = f" One of: {', '.join(s.choices)}." if s.choices else ""
        rows.append(f"| `{s.key}` | `{config.env_name(s.key)}` | `{default}` | {s.help}{choices} |")
    return "\n".join(rows) + "\n"


def example_yaml() -> str:
    """The annotated example config (`scribewatch.example.yaml`): every key, at its default."""
    lines = ["# scribewatch configuration. Every key is optional; shown here at its default.",
             "# Precedence: command-line flags > SCRIBEWATCH_<KEY> environment > this file"
             " > defaults.",
             "# Copy to scribewatch.yaml (read from the working folder) or pass --config FILE.", ""]
    for s in config.SCHEMA:
        lines.append(f"# {s.help}" + (f" One of: {', '.join(s.choices)}." if s.choices else ""))
        lines.append(f"{s.key}: {_yaml_value(s.default, s.kind)}")
        lines.append("")
    return "\n".join(lines)


def reasons_markdown() -> str:
    """The "Bad input" tables: every failure reason, every skip reason, the API's refusals."""
    rows = ["| reason | stage | retried | when |", "| --- | --- | --- | --- |"]
    for r in FAILURES:
        # Reported under any stage (the exporter pre-initialises every one): say so.
        stages = {s for s, code in FAILURE_LABELS if code == r.code}
        stage = "any" if stages == set(STAGES) else r.stage
        rows.append(f"| `{r.code}` | {stage} | {'yes' if r.retried else 'no'} | {r.when} |")
    rows += ["", "| skipped (no subtitle written) | when |", "| --- | --- |"]
    rows += [f"| `{r.code}` | {r.when} |" for r in SKIPS]
    rows += ["", "| API request refused (no job ran) | when |", "| --- | --- |"]
    rows += [f"| `{r.code}` | {r.when} |" for r in API_REJECTIONS]
    return "\n".join(rows) + "\n"


def api_outputs_markdown() -> str:
    """The transcription API's answer formats per protocol, from the format registry."""
    def names(outputs):
        return ", ".join(f"`{o}`" for o in outputs)
    return "\n".join([
        "| API | answer formats |", "| --- | --- |",
        f"| `POST /asr`: `output` (default `txt`) | {names(ASR_OUTPUTS)} |",
        f"| `POST /v1/audio/*`: `response_format` (default `json`) | {names(OPENAI_OUTPUTS)} |",
    ]) + "\n"


def render_readme(text: str) -> str:
    for name, (source, render) in REGIONS.items():
        begin, end = f"<!-- {name}:", f"<!-- /{name} -->"
        head, sep, rest = text.partition(begin)
        if not sep or end not in rest:
            raise ValueError(f"README.md: no {begin} … {end} region")
        _, tail = rest.split(end, 1)
        text = (f"{head}{begin} generated from {source} by {COMMAND} -->\n"
                f"{render()}{end}{tail}")
    return text


def outputs() -> dict[str, str]:
    """Repository-relative path -> the text this generator makes for it now."""
    return {"README.md": render_readme((REPO / "README.md").read_text()),
            "scribewatch.example.yaml": example_yaml()}


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a != "--check"]
    if unknown:
        print(f"usage: python -m scribewatch.pipeline.docs [--check] (unknown: "
              f"{' '.join(unknown)})", file=sys.stderr)
        return 2
    stale = []
    for rel, text in outputs().items():
        path = REPO / rel
        if path.exists() and path.read_text() == text:
            continue
        if "--check" in argv:
            stale.append(rel)
        else:
            path.write_text(text)
            print(f"wrote {rel}")
    if stale:
        print("out of date (run `python -m scribewatch.pipeline.docs`):", ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
