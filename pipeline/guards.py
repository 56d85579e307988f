"""Hallucination guard: cheap text checks for the ways Whisper goes wrong.

Whisper sometimes loops ("Thank you. Thank you. Thank you.", "the rest of the rest of the
rest of…") or emits more text than anyone could say in the time. None of these checks needs
the audio; each finding is one short sentence for the JSON output, the log and the
`suspect` metric. Also here: `normalize_text`, the project's one way of comparing a transcript
with reference text (the tests' word_error_rate, in tests/harness/quality.py, builds on it).
"""

from __future__ import annotations

import dataclasses
import math
import re
import textwrap
import unicodedata
import zlib

from .subtitles.cues import build_cues
from .transcript import Segment, Transcript

# People do say "No. No." — but the same sentence three times running is a decoding loop.
MIN_SENTENCE_REPEATS = 3
# A phrase looping back to back this many times...
MIN_LOOP_REPEATS = 3
# ...over at least this many words (so "I'm sorry, I'm sorry, I'm sorry" is still speech).
MIN_LOOP_WORDS = 10
# Longest phrase tried as the unit of a loop; Whisper's loops are short phrases.
MAX_LOOP_NGRAM = 10
# Whisper's own compression_ratio_threshold: text that compresses this well is repetition.
MAX_COMPRESSION_RATIO = 2.4
# ...calibrated on one 30 s window (at most 224 tokens, ~1000 characters): zlib finds more
# redundancy in longer text, and ordinary English passes 2.4 at about 2000 characters.
COMPRESSION_WINDOW_CHARS = 1000
# Very fast speech is ~20 letters (5 words) a second; beyond these the text was invented.
MAX_CHARS_PER_SECOND = 25.0
MAX_WORDS_PER_SECOND = 6.0
# Over shorter spans a single mistimed word swings the rate: density must be sustained.
MIN_DENSITY_SECONDS = 1.0
# Word timestamps are only good to about a quarter second: each span gets that benefit of the
# doubt (real speech squeezed by Whisper reaches 24 letters/s over 1.3 s without it).
TIMING_SLACK_SECONDS = 0.25
# A pathological file must not produce a findings list longer than the transcript.
MAX_FINDINGS = 20

_CLOSERS = "\"'”’»)\\]"
# A sentence ends at . ? ! … (then a space, so "3.5" does not) or at a full-width 。？！.
_SENTENCE_SPLIT = re.compile(rf"[.?!…][{_CLOSERS}]*\s+|[。？！][{_CLOSERS}]*\s*")
_SENTENCE_END = re.compile(rf"[.?!…。？！][{_CLOSERS}]*$")
_APOSTROPHES = "'’ʼ"


def normalize_text(text: str) -> str:
    """Case-fold, drop punctuation and symbols, collapse spaces: "Don't, Sir!" → "dont sir"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    # Apostrophes join ("don't" → "dont"); other punctuation separates ("well-known").
    kept = [("" if ch in _APOSTROPHES else " ") if unicodedata.category(ch)[0] in "PS" else ch
            for ch in text]
    return " ".join("".join(kept).split())


@dataclasses.dataclass
class _Sentence:
    words: list[str] = dataclasses.field(default_factory=list)        # normalized
    times: list[float] = dataclasses.field(default_factory=list)      # start of each word, s


def _sentences(transcript: Transcript) -> list[_Sentence]:
    """The transcript as normalized sentences, timed by word when word timestamps exist."""
    sentences: list[_Sentence] = []
    for segment in transcript.segments:
        if segment.words:
            current = None
            for word in segment.words:
                tokens = normalize_text(word.text).split()
                if tokens:
                    current = current or _Sentence()
                    current.words += tokens
                    current.times += [word.start] * len(tokens)
                if current and _SENTENCE_END.search(word.text.strip()):
                    sentences.append(current)
                    current = None
            if current:
                sentences.append(current)
        else:
            for part in _SENTENCE_SPLIT.split(segment.text.strip()):
                tokens = normalize_text(part).split()
                if tokens:
                    sentences.append(_Sentence(tokens, [segment.start] * len(tokens)))
    return sentences


def _repeated_sentences(sentences: list[_Sentence]) -> list[str]:
    findings = []
    run_start = 0
    for index in range(1, len(sentences) + 1):
        if index < len(sentences) and sentences[index].words == sentences[run_start].words:
            continue
        count = index - run_start
        if count >= MIN_SENTENCE_REPEATS:
            first = sentences[run_start]
            findings.append(f'sentence repeated {count} times in a row at {first.times[0]:.1f} s: '
                            f'"{_quote(first.words)}"')
        run_start = index
    return findings


def _loops(sentences: list[_Sentence]) -> list[str]:
    findings = []
    for sentence in sentences:
        words, i = sentence.words, 0
        while i < len(words):
            loop = _loop_at(words, i)
            if loop is None:
                i += 1
                continue
            size, repeats = loop
            findings.append(f'phrase loop at {sentence.times[i]:.1f} s: '
                            f'"{_quote(words[i:i + size])}" {repeats} times')
            i += size * repeats
    return findings


def _loop_at(words: list[str], i: int) -> tuple[int, int] | None:
    """(phrase length, repeats) of the shortest phrase looping from words[i], if any."""
    for size in range(1, MAX_LOOP_NGRAM + 1):
        phrase = words[i:i + size]
        if len(phrase) < size:
            return None
        repeats = 1
        while words[i + repeats * size:i + (repeats + 1) * size] == phrase:
            repeats += 1
        if repeats >= MIN_LOOP_REPEATS and repeats * size >= MIN_LOOP_WORDS:
            return size, repeats
    return None


def _compression_ratio(text: str) -> float:
    # As Whisper computes it: UTF-8 bytes over zlib-compressed bytes.
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _too_compressible(segments: tuple[Segment, ...]) -> list[str]:
    findings = []
    for segment in segments:
        windows = textwrap.wrap(segment.text, COMPRESSION_WINDOW_CHARS, break_long_words=False,
                                break_on_hyphens=False)
        ratio = max(map(_compression_ratio, windows), default=0.0)
        if ratio > MAX_COMPRESSION_RATIO:
            findings.append(f"segment at {segment.start:.1f} s compresses too well "
                            f"(ratio {ratio:.2f} > {MAX_COMPRESSION_RATIO})")
    return findings


def _density(what: str, start: float, end: float, text: str) -> str | None:
    """A finding if text is spoken impossibly fast between start and end."""
    if end - start <= MIN_DENSITY_SECONDS:
        return None
    words = normalize_text(text).split()
    seconds = end - start + TIMING_SLACK_SECONDS
    # Letters and digits only: spaces and punctuation are not spoken.
    chars_rate = sum(len(w) for w in words) / seconds
    words_rate = len(words) / seconds
    if chars_rate > MAX_CHARS_PER_SECOND or words_rate > MAX_WORDS_PER_SECOND:
        return (f"{what} at {start:.1f} s is too dense for speech: {chars_rate:.0f} characters/s, "
                f"{words_rate:.1f} words/s over {end - start:.1f} s")
    return None


def _too_dense(transcript: Transcript) -> list[str]:
    """Whole segments, then cues: batched segments are ~30 s and would average a burst away."""
    findings, flagged = [], []
    for segment in transcript.segments:
        finding = _density("segment", segment.start, segment.end, segment.text)
        if finding:
            findings.append(finding)
            flagged.append((segment.start, segment.end))
    # Cues timed by the words alone: lengthened for reading, a burst would look slower.
    for cue in build_cues(transcript.words, max_cps=math.inf, min_seconds=0.0):
        inside_flagged = any(s <= cue.start and cue.end <= e for s, e in flagged)
        finding = None if inside_flagged else _density("cue", cue.start, cue.end, cue.text)
        if finding:
            findings.append(finding)
    return findings


def _quote(words: list[str], limit: int = 60) -> str:
    text = " ".join(words)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check_transcript(transcript: Transcript) -> list[str]:
    """Short, readable findings about likely hallucinations; [] for a clean transcript."""
    sentences = _sentences(transcript)
    findings = (_repeated_sentences(sentences) + _loops(sentences)
                + _too_compressible(transcript.segments) + _too_dense(transcript))
    if len(findings) > MAX_FINDINGS:
        hidden = len(findings) - (MAX_FINDINGS - 1)
        findings = findings[:MAX_FINDINGS - 1] + [f"… and {hidden} more findings"]
    return findings
