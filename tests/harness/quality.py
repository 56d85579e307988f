"""Quality measures for produced subtitles: the SRT reader, the readability checker, WER.

Only the tests and the benchmarks judge output this way, so these live in the harness rather
than in the product (`scribewatch.pipeline` writes subtitles; it never reads them back).

    from tests.harness.quality import parse_srt, check_readability, word_error_rate
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from scribewatch.pipeline.guards import normalize_text
# The product's own timestamp formatter, so a problem names a cue exactly as the SRT shows it.
from scribewatch.pipeline.subtitles import Cue, _timestamp


# -- checks -----------------------------------------------------------------------------------
def check_readability(cues: Sequence[Cue], max_line_chars: int = 42, max_lines: int = 2,
                      max_seconds: float = 7.0) -> list[str]:
    """Every way the cues break the limits, as readable sentences; [] when all is well."""
    problems: list[str] = []
    previous: Cue | None = None
    for number, cue in enumerate(cues, 1):
        where = f"cue {number} ({_timestamp(cue.start, ',')})"
        if cue.end <= cue.start:
            problems.append(f"{where}: ends at {cue.end:.3f} s, not after its start")
        elif cue.end - cue.start > max_seconds + 0.0005:    # half a millisecond: SRT resolution
            problems.append(f"{where}: on screen {cue.end - cue.start:.3f} s (max {max_seconds})")
        if not cue.lines or not all(line.strip() for line in cue.lines):
            problems.append(f"{where}: empty line")
        if len(cue.lines) > max_lines:
            problems.append(f"{where}: {len(cue.lines)} lines (max {max_lines})")
        for line_number, line in enumerate(cue.lines, 1):
            if len(line) > max_line_chars:
                problems.append(f"{where}: line {line_number} has {len(line)} characters "
                                f"(max {max_line_chars})")
        if previous is not None:
            if cue.start < previous.start:
                problems.append(f"{where}: starts before cue {number - 1}")
            elif cue.start < previous.end:
                problems.append(f"{where}: overlaps cue {number - 1} by "
                                f"{previous.end - cue.start:.3f} s")
        previous = cue
    return problems


# -- parsing ----------------------------------------------------------------------------------
_TIME = r"(\d+):(\d{2}):(\d{2})[,.](\d{3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    # Whole milliseconds first, as build_cues does, so a round trip gives equal floats.
    return (int(h) * 3_600_000 + int(m) * 60_000 + int(s) * 1000 + int(ms)) / 1000


def parse_srt(text: str) -> list[Cue]:
    """Cues of an SRT file (BOM, CRLF and missing index lines tolerated); ValueError if broken."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return []
    cues = []
    for number, block in enumerate(re.split(r"\n[ \t]*\n\s*", text), 1):
        lines = block.split("\n")
        if lines[0].strip().isdigit():
            lines = lines[1:]
        timing = _TIMING.match(lines[0]) if lines else None
        if timing is None:
            raise ValueError(f"SRT block {number} has no timing line: {block[:80]!r}")
        times = timing.groups()
        cues.append(Cue(_seconds(*times[:4]), _seconds(*times[4:]),
                        tuple(line.rstrip() for line in lines[1:])))
    return cues


# -- word error rate --------------------------------------------------------------------------
def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after normalize_text.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref = normalize_text(reference).split()
    hyp = normalize_text(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    # Levenshtein distance over words, one row at a time.
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1] / len(ref)
