"""Readable subtitle cues from word timestamps, and the SRT / VTT / TXT / JSON renderers.

faster-whisper's batched inference returns ~30 s segments, far too long to show on screen, so
cues are built from word timestamps alone, the way a subtitler would cut them: at most
`max_lines` lines of `max_line_chars`, at most `max_seconds` on screen, a new cue at every
pause unless that leaves a cue too short, breaks after sentence ends (then clause
punctuation) rather than mid-phrase, and balanced lines. The cut is a small dynamic programme
over break points, so one early decision cannot force an ugly cue later.

Reading speed comes first: a cue asks at most `max_cps` characters per second of the viewer
(20 by default, the Netflix adult rate) and stays at least `min_seconds` on screen, lengthened
into the silence that follows when its words alone are too quick; when that silence is too
short, the cut joins it with a neighbour instead, even across a short pause. A line never ends
on an article, preposition or conjunction when another break will do (`linebreaks.py`).

Timing follows the speech, not Whisper alone: a word's timestamps are off by up to half a
second where speech resumes after a pause (tiny.en on clean speech: −0.6 s to +0.25 s), so
given the VAD's speech regions (`speech.py`) a word that begins a stretch of speech starts where
that stretch starts, and one that ends it ends no earlier than the stretch ends. Consecutive
cues are at least two frames apart, and a gap under half a second is closed to exactly two
frames ("chaining", Netflix's timing guidelines: 12 frames at 24 fps).

All timing work is done in integer milliseconds: that is the resolution of SRT and VTT, and it
makes "never overlapping" and "end > start" exact instead of subject to float rounding.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence

from ..speech import SpeechRegion
from ..transcript import Transcript, Word
from .linebreaks import ends_on_function_word


@dataclasses.dataclass(frozen=True)
class Cue:
    start: float                  # seconds
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


# -- break preferences (costs of the cue-cutting programme; lower is better) ---------------
# Every cue costs something, so text that fits in one cue stays in one cue.
CUE_COST = 1.0
# Weight of (1 - fill)²: evens out cue sizes and discourages one- or two-word orphan cues.
UNDERFILL_WEIGHT = 3.0
# Cutting after a sentence end (or at a pause, or at the end) is free: the natural cut.
SENTENCE_BREAK_COST = 0.0
# After , ; : — a good cut, but only once the cue is reasonably full, about one line's worth
# of text or time ("Well," alone is not).
CLAUSE_BREAK_COST = 2.0
CLAUSE_MIN_FILL = 0.35
# Anywhere else the viewer reads half a phrase: only when nothing better fits.
MID_PHRASE_COST = 10.0
# Between two pieces of a hard-wrapped over-long word: the last resort. Dearer than cutting
# on both sides of the word plus the extra cue, so a word that fits one cue gets one.
WORD_SPLIT_COST = 40.0
# Ending a cue mid-phrase on "the", "of", "and"...: worse than any other mid-phrase cut.
FUNCTION_WORD_BREAK_COST = 5.0
# Spanning a pause (> pause_seconds): only to keep a cue readable, so dearer than any break;
# and more so the longer the pause beyond pause_seconds (per second, as much as a second of
# reading time lacked): text on screen through seconds of silence, shown long before it is
# spoken, misleads more than a cue a little too fast to read.
PAUSE_SPAN_COST = 30.0
PAUSE_SPAN_COST_PER_SECOND = 100.0
# A cue too fast to read (over max_cps) or too short (under min_seconds) even when lengthened
# to the next cue's start: dearer than everything above, and more so the more time it lacks
# (per second), so when speech is too dense for any readable cut, the least bad one wins.
UNREADABLE_COST = 100.0
UNREADABLE_COST_PER_SECOND = 100.0

# -- timing to the speech and between cues (ms) ---------------------------------------------
# Two frames: the least gap between two subtitles (Netflix, "regardless of frame rate"; the eye
# sees two cues touching as one that flickers). 84 ms is two frames at 23.976 fps and more at
# 24 and 25.
MIN_GAP_MS = 84
# A gap under this between two cues is closed to MIN_GAP_MS by keeping the first on screen
# longer (Netflix chains gaps of 12 frames or fewer, half a second at 24 fps): the text stays
# readable longer instead of blinking off and on.
CHAIN_GAP_MS = 500
# How far after a word placed in a silence the speech it belongs to may begin: Whisper puts the
# first word of a sentence up to ~0.6 s early.
SNAP_MS = 1000

# -- line balancing (in characters of imbalance) --------------------------------------------
# How much imbalance a line break after punctuation is worth: readers parse lines as units,
# so a break at "., " beats a perfectly even break mid-phrase unless it is far off-centre.
SENTENCE_LINE_BONUS = 0.4         # × max_line_chars
CLAUSE_LINE_BONUS = 0.25          # × max_line_chars
# A line ending on a function word costs this much imbalance: a break elsewhere almost always
# exists within it.
FUNCTION_WORD_LINE_PENALTY = 0.5  # × max_line_chars

_CLOSERS = "\"'”’»)]}"
_SENTENCE_END = re.compile(rf"[.?!…。？！][{re.escape(_CLOSERS)}]*$")
_CLAUSE_END = re.compile(rf"[,;:，、；：—–][{re.escape(_CLOSERS)}]*$")
# Scripts written without spaces between words (CJK, kana, Thai, Lao, Myanmar, Khmer, and
# full-width forms): Whisper gives their words without a leading space, and so do we.
_NO_SPACE_SCRIPT = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef]")


@dataclasses.dataclass(frozen=True)
class _Token:
    """One word as laid out: clean text, millisecond times, and how it joins its predecessor."""
    text: str
    start: int
    end: int
    glued: bool = False           # no space before it on the same line (CJK, word pieces)
    piece: bool = False           # continuation of a hard-wrapped word


def _is_sentence_end(text: str) -> bool:
    return bool(_SENTENCE_END.search(text))


def _is_clause_end(text: str) -> bool:
    return bool(_CLAUSE_END.search(text))


def _tokens(words: Sequence[Word], max_line_chars: int) -> list[_Token]:
    """Clean words: strip spaces, drop empty ones, milliseconds, hard-wrap over-long words."""
    tokens: list[_Token] = []
    for word in words:
        text = " ".join(word.text.split())
        if not text:
            continue
        # Whisper's timestamps are occasionally zero-length or inverted: an end never precedes
        # its start (starts out of order are put right when cues are timed).
        start = round(word.start * 1000)
        end = max(round(word.end * 1000), start)
        glued = bool(tokens) and not word.text[:1].isspace() and bool(
            _NO_SPACE_SCRIPT.match(text[0]) or _NO_SPACE_SCRIPT.match(tokens[-1].text[-1]))
        tokens.extend(_hard_wrap(_Token(text, start, end, glued), max_line_chars))
    return tokens


def _hard_wrap(token: _Token, max_line_chars: int) -> list[_Token]:
    """A word longer than a line becomes even pieces (time shared by length), one per line."""
    length = len(token.text)
    if length <= max_line_chars:
        return [token]
    count = -(-length // max_line_chars)
    size, extra = divmod(length, count)
    pieces: list[_Token] = []
    offset = 0
    for index in range(count):
        chunk = token.text[offset:offset + size + (1 if index < extra else 0)]
        start = token.start + (token.end - token.start) * offset // length
        offset += len(chunk)
        end = token.start + (token.end - token.start) * offset // length
        pieces.append(_Token(chunk, start, end, glued=token.glued if index == 0 else True,
                             piece=index > 0))
    return pieces


def _midpoint(token: _Token) -> float:
    return (token.start + token.end) / 2


def _own_region(token: _Token, regions: Sequence[SpeechRegion],
                previous_mid: float) -> SpeechRegion | None:
    """The stretch of speech a word was spoken in: the region it overlaps most; for a word
    Whisper put in a silence, the region just before it when that one is not the previous
    word's (a late word), else the next one within SNAP_MS (an early word)."""
    best, overlap = None, 0
    end = max(token.end, token.start + 1)   # a zero-length word is in the region it is in
    for region in regions:
        if region.start >= end:
            break
        shared = min(region.end, end) - max(region.start, token.start)
        if shared > overlap:
            best, overlap = region, shared
    if best is not None:
        return best
    before = [r for r in regions if r.end <= token.start]
    if before and before[-1].start > previous_mid:
        return before[-1]
    after = next((r for r in regions if r.start >= token.start), None)
    if after is not None and after.start - token.end <= SNAP_MS:
        return after
    return None


def _snap_to_speech(tokens: Sequence[_Token], regions: Sequence[SpeechRegion]) -> list[_Token]:
    """Each word that begins a stretch of speech (its region starts after the previous word's
    middle) starts where the stretch starts; each word that ends one (its region ends before the
    next word's middle) ends where the stretch ends. A word Whisper put in a silence is moved
    into its stretch first. Words inside a stretch keep Whisper's times: a cue cut there,
    mid-speech, starts on its word."""
    regions = sorted(regions, key=lambda r: r.start)
    snapped: list[_Token] = []
    for index, token in enumerate(tokens):
        previous_mid = _midpoint(tokens[index - 1]) if index else -math.inf
        next_mid = _midpoint(tokens[index + 1]) if index + 1 < len(tokens) else math.inf
        region = _own_region(token, regions, previous_mid)
        start, end = token.start, token.end
        if region is not None:
            if end <= region.start or start >= region.end:     # in a silence: into its stretch
                start = min(max(start, region.start), region.end)
                end = min(max(end, region.start), region.end)
            if region.start > previous_mid:
                start = region.start
            if region.end < next_mid:
                end = region.end
        snapped.append(dataclasses.replace(token, start=start, end=max(end, start)))
    return snapped


def _line_width(tokens: Sequence[_Token]) -> int:
    return sum(len(t.text) for t in tokens) + sum(1 for t in tokens[1:] if not t.glued)


def _join(tokens: Sequence[_Token]) -> str:
    return "".join(("" if i == 0 or t.glued else " ") + t.text for i, t in enumerate(tokens))


def _line_count(tokens: Sequence[_Token], max_line_chars: int) -> int:
    """Fewest lines the tokens wrap into (greedy filling is optimal for that)."""
    lines, width = 1, len(tokens[0].text)
    for token in tokens[1:]:
        step = len(token.text) + (0 if token.glued else 1)
        if width + step <= max_line_chars:
            width += step
        else:
            lines, width = lines + 1, len(token.text)
    return lines


def _layout(tokens: Sequence[_Token], max_line_chars: int,
            language: str | None = "en") -> tuple[str, ...]:
    """Lay the tokens of one cue out in as few lines as possible, balanced, breaking at
    punctuation when that is not much less even. Tokens never split (long words are already
    pieces)."""
    count = _line_count(tokens, max_line_chars)
    n = len(tokens)
    ideal = _line_width(tokens) / count

    def bonus(end: int) -> float:                   # line break after tokens[end - 1]
        text = tokens[end - 1].text
        if _is_sentence_end(text):
            return SENTENCE_LINE_BONUS * max_line_chars
        if _is_clause_end(text):
            return CLAUSE_LINE_BONUS * max_line_chars
        if ends_on_function_word(text, language) and not tokens[end].piece:
            return -FUNCTION_WORD_LINE_PENALTY * max_line_chars
        return 0.0

    # best[lines][start]: cheapest way to lay tokens[start:] out in exactly `lines` lines.
    best: list[dict[int, tuple[float, int]]] = [{n: (0.0, n)}] + [{} for _ in range(count)]
    for lines in range(1, count + 1):
        for start in range(n - 1, -1, -1):
            width = -1                      # the first token adds no space
            for end in range(start + 1, n + 1):
                token = tokens[end - 1]
                width += len(token.text) + (0 if token.glued and end > start + 1 else 1)
                if width > max_line_chars:
                    break
                if end not in best[lines - 1]:
                    continue
                cost = abs(width - ideal) + best[lines - 1][end][0]
                if end < n:
                    cost -= bonus(end)
                if start not in best[lines] or cost < best[lines][start][0]:
                    best[lines][start] = (cost, end)
    result, start = [], 0
    for lines in range(count, 0, -1):
        end = best[lines][start][1]
        result.append(_join(tokens[start:end]))
        start = end
    return tuple(result)


@dataclasses.dataclass(frozen=True)
class _Limits:
    max_line_chars: int
    max_lines: int
    max_ms: int
    min_ms: int
    pause_ms: int
    max_cps: float
    language: str | None


def _cut(tokens: Sequence[_Token], limits: _Limits) -> list[tuple[int, int]]:
    """Best split of the token stream into cues, as (first, end) index pairs.

    A cue is feasible when it wraps into max_lines lines and lasts at most max_ms; a single
    token is always feasible (its time is clipped later). Among feasible splits, the cheapest
    by the costs above wins: readability (reading speed, time on screen) first, then pauses.
    """
    n = len(tokens)
    capacity = limits.max_line_chars * limits.max_lines
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for first in range(n):
        lines, width = 1, len(tokens[first].text)
        chars, last_end, spanned = width, tokens[first].end, 0.0
        start = tokens[first].start
        for end in range(first + 1, n + 1):
            if end > first + 1:             # extend the cue by tokens[end - 1]
                token = tokens[end - 1]
                if token.start - last_end > limits.pause_ms:
                    spanned += PAUSE_SPAN_COST + PAUSE_SPAN_COST_PER_SECOND * (
                        token.start - last_end - limits.pause_ms) / 1000
                last_end = max(last_end, token.end)
                step = len(token.text) + (0 if token.glued else 1)
                if width + step <= limits.max_line_chars:
                    width += step
                else:
                    lines, width = lines + 1, len(token.text)
                chars += step
                if lines > limits.max_lines or last_end - start > limits.max_ms:
                    break
            fill = min(1.0, max(chars / capacity, (last_end - start) / limits.max_ms))
            cost = (best[first] + CUE_COST + UNDERFILL_WEIGHT * (1.0 - fill) ** 2
                    + spanned + _break_cost(tokens, end, last_end, fill, limits)
                    + _unreadable_cost(tokens, start, end, chars, limits))
            if cost < best[end]:
                best[end], back[end] = cost, first
    spans, end = [], n
    while end > 0:
        spans.append((back[end], end))
        end = back[end]
    return spans[::-1]


def _needed_ms(chars: int, limits: _Limits) -> int:
    """Time on screen `chars` characters need: the reading speed, and never under min_ms."""
    return max(limits.min_ms, math.ceil(chars * 1000 / limits.max_cps))


def _unreadable_cost(tokens: Sequence[_Token], start: int, end: int, chars: int,
                     limits: _Limits) -> float:
    """Cost of a cue from `start` (ms) that cannot get the time its text needs before the next
    cue, tokens[end], starts."""
    following = tokens[end].start - MIN_GAP_MS if end < len(tokens) else math.inf
    room = min(following - start, limits.max_ms)
    lacking = _needed_ms(chars, limits) - max(room, 0)
    if lacking <= 0:
        return 0.0
    return UNREADABLE_COST + UNREADABLE_COST_PER_SECOND * lacking / 1000


def _break_cost(tokens: Sequence[_Token], end: int, last_end: int, fill: float,
                limits: _Limits) -> float:
    """Cost of ending a cue just before tokens[end]."""
    if end == len(tokens) or tokens[end].start - last_end > limits.pause_ms:
        return SENTENCE_BREAK_COST
    if tokens[end].piece:
        return WORD_SPLIT_COST
    text = tokens[end - 1].text
    if _is_sentence_end(text):
        return SENTENCE_BREAK_COST
    if _is_clause_end(text) and fill >= CLAUSE_MIN_FILL:
        return CLAUSE_BREAK_COST
    if ends_on_function_word(text, limits.language):
        return MID_PHRASE_COST + FUNCTION_WORD_BREAK_COST
    return MID_PHRASE_COST


def build_cues(words: Sequence[Word], *, max_line_chars: int = 42, max_lines: int = 2,
               max_seconds: float = 7.0, pause_seconds: float = 0.6,
               min_seconds: float = 0.8, max_cps: float = 20.0,
               language: str | None = "en",
               speech: Sequence[SpeechRegion] | None = None) -> list[Cue]:
    """Readable cues from word timestamps: in time order, at least MIN_GAP_MS apart, within
    limits.

    `language` (ISO 639-1) picks the words a line should not end on; English by default.
    `speech`: the VAD's speech regions of the same audio; cues start and end on them where
    speech begins and ends (None: Whisper's word times alone).
    """
    if max_line_chars < 1 or max_lines < 1 or max_seconds <= 0 or pause_seconds < 0:
        raise ValueError("cue limits must be positive")
    if min_seconds > max_seconds:
        raise ValueError(f"min_seconds {min_seconds} > max_seconds {max_seconds}")
    if not max_cps > 0:
        raise ValueError(f"max_cps must be positive, not {max_cps}")
    limits = _Limits(max_line_chars, max_lines, round(max_seconds * 1000),
                     round(min_seconds * 1000), round(pause_seconds * 1000), max_cps, language)
    tokens = _tokens(words, max_line_chars)
    if speech is not None:
        tokens = _snap_to_speech(tokens, speech)
    spans = _cut(tokens, limits)
    starts = [tokens[first].start for first, _ in spans]
    cues: list[Cue] = []
    previous_end = -MIN_GAP_MS
    for index, (first, end) in enumerate(spans):
        # A start only moves when words are out of order or the previous cue, made of
        # zero-length words, had to be given its 1 ms.
        start = max(starts[index], previous_end + MIN_GAP_MS, 0)
        # The next cue's start less the two-frame gap: the furthest this one may last.
        following = (starts[index + 1] - MIN_GAP_MS if index + 1 < len(starts) else math.inf)
        lines = _layout(tokens[first:end], max_line_chars, language)
        # On screen while the words are spoken, and on into the silence after them as long as
        # reading the text takes; never past max_seconds, never within two frames of the next
        # cue. The gap wins over the speech's end: when the next cue starts right on it, this
        # one ends MIN_GAP_MS (< 0.1 s) before. A short gap left is closed (chaining).
        needed = _needed_ms(len(" ".join(lines)), limits)
        spoken = max(t.end for t in tokens[first:end])
        stop = min(max(spoken, start + needed), start + limits.max_ms, following)
        if following - stop <= CHAIN_GAP_MS - MIN_GAP_MS and following <= start + limits.max_ms:
            stop = following
        stop = int(max(stop, start + 1))
        cues.append(Cue(start / 1000, stop / 1000, lines))
        previous_end = stop
    return cues


# -- renderers --------------------------------------------------------------------------------
def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def render_srt(cues: Sequence[Cue]) -> str:
    blocks = [f"{number}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n"
              + "\n".join(cue.lines) + "\n" for number, cue in enumerate(cues, 1)]
    # A blank line ends every cue, the last one too: some players drop a last cue without it.
    return "".join(block + "\n" for block in blocks)


def _vtt_escape(line: str) -> str:
    # VTT cue text is markup: a bare "&" or "<" would be read as an entity or a tag.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(cues: Sequence[Cue]) -> str:
    blocks = [f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n"
              + "\n".join(_vtt_escape(line) for line in cue.lines) + "\n" for cue in cues]
    return "".join(["WEBVTT\n", *("\n" + block for block in blocks), "\n" if blocks else ""])


def render_txt(transcript: Transcript) -> str:
    """Plain text, one paragraph (line) per segment."""
    paragraphs = [" ".join(s.text.split()) for s in transcript.segments if s.text.strip()]
    return "".join(p + "\n" for p in paragraphs)


def _number(value: float, digits: int) -> float | None:
    # JSON has no NaN or Infinity: an odd log-probability must not make the file unreadable.
    return round(value, digits) if math.isfinite(value) else None


def render_json(transcript: Transcript, cues: Sequence[Cue]) -> str:
    document = {
        "language": transcript.language,
        "language_probability": _number(transcript.language_probability, 4),
        "duration": _number(transcript.duration, 3),
        "model": transcript.model,
        "suspect": list(transcript.suspect),
        "text": transcript.text,
        "segments": [{
            "start": _number(s.start, 3),
            "end": _number(s.end, 3),
            "text": s.text.strip(),
            "avg_logprob": _number(s.avg_logprob, 4),
            "no_speech_prob": _number(s.no_speech_prob, 4),
            "compression_ratio": _number(s.compression_ratio, 4),
            "words": [{"start": _number(w.start, 3), "end": _number(w.end, 3),
                       "text": w.text.strip(), "probability": _number(w.probability, 4)}
                      for w in s.words],
        } for s in transcript.segments],
        "cues": [{"start": c.start, "end": c.end, "lines": list(c.lines)} for c in cues],
        # Where the VAD heard speech (what the cues are timed on); null when it did not run.
        "speech": (None if transcript.speech is None else
                   [{"start": r.start / 1000, "end": r.end / 1000}
                    for r in transcript.speech.regions]),
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
