"""Which language a file is in: a vote over windows of speech spread across the whole file.

Whisper decides a file's language from its first 30 s. A film that opens with music, a
foreign-language prologue or an English studio logo is then transcribed in the wrong language
from start to end (multilingual.mp3, English then German, is "en" with p 0.999 that way). Here
the file's speech (Silero VAD, as transcription uses it) is cut into windows of a few seconds of
speech each; up to `max_windows` of them, spread evenly from start to end, each get Whisper's
own detection (`WhisperModel.detect_language`, one 30-s encoder pass per window); each window's
probabilities count in proportion to its seconds of speech. The decision carries every
language's share, so a caller sees a mix (confidence below `threshold`: `language_uncertain`)
instead of one confident guess.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from .codes import UNKNOWN, language_label

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Seconds of speech per window: long enough for Whisper to be sure (jfk.flac's 11 s gives 0.95
# with base), short enough that a window rarely straddles a change of language.
WINDOW_SECONDS = 10.0
# Windows per file: each costs one encoder pass, like a second of transcription on a CPU.
MAX_WINDOWS = 6
# Below this confidence (the winner's share of the vote) the decision is uncertain. Measured
# (bench/language.py): one language alone gets 0.93-1.0, a German film with an English intro
# 0.83, a file with 70 % English and 30 % German speech 0.66, English-then-German half and half
# 0.50. At 0.8 the 70/30 file was skipped, though its subtitles belong in its main language;
# 0.6 still calls the half-and-half file uncertain.
UNCERTAIN_BELOW = 0.6
# A language with at least this share of the vote is reported as part of a mix.
MIX_SHARE = 0.15


@dataclasses.dataclass(frozen=True)
class WindowVote:
    """Whisper's detection on one window of speech."""
    start: float                  # where the window's speech begins in the file, seconds
    end: float                    # where it ends
    speech_seconds: float         # its weight in the vote
    language: str                 # Whisper's top language for it
    probability: float


@dataclasses.dataclass(frozen=True)
class LanguageDecision:
    language: str                 # Whisper's code, or `unknown` (no speech)
    confidence: float             # the winner's share of the vote, 0..1
    source: str                   # "vote", or "model" for an English-only model
    shares: dict[str, float]      # language -> share of the vote, largest first (>= 0.001)
    windows: tuple[WindowVote, ...]
    seconds: float                # what deciding cost
    uncertain_below: float = UNCERTAIN_BELOW

    @property
    def uncertain(self) -> bool:
        return self.confidence < self.uncertain_below

    @property
    def mix(self) -> dict[str, float]:
        """The languages with a real share of the speech (two or more: a mixed file)."""
        return {code: share for code, share in self.shares.items() if share >= MIX_SHARE}


def speech_windows(audio: np.ndarray, window_seconds: float = WINDOW_SECONDS,
                   vad_options=None) -> list[tuple[int, int, np.ndarray]]:
    """The file's speech in windows of about `window_seconds` of speech, in order, as
    (first sample, last sample, the speech samples joined)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    limit = int(window_seconds * SAMPLE_RATE)
    # VAD joins speech across pauses under 2 s: a film's dialogue can be one long chunk. Cut
    # such chunks into even pieces of at most a window.
    chunks = []
    for chunk in get_speech_timestamps(audio, vad_options or VadOptions()):
        size = chunk["end"] - chunk["start"]
        pieces = max(1, -(-size // limit))
        chunks += [{"start": chunk["start"] + size * i // pieces,
                    "end": chunk["start"] + size * (i + 1) // pieces} for i in range(pieces)]
    windows: list[tuple[int, int, np.ndarray]] = []
    group: list[dict] = []
    for chunk in chunks + [None]:
        size = sum(c["end"] - c["start"] for c in group)
        if group and (chunk is None or size + chunk["end"] - chunk["start"] > limit):
            speech = np.concatenate([audio[c["start"]:c["end"]] for c in group])
            windows.append((group[0]["start"], group[-1]["end"], speech))
            group = []
        if chunk is not None:
            group.append(chunk)
    return windows


def _spread(count: int, wanted: int) -> list[int]:
    """`wanted` indices out of range(count), evenly spread: first and last included (one: the
    middle)."""
    if count <= wanted:
        return list(range(count))
    if wanted == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def vote_language(model, audio: np.ndarray, *, max_windows: int = MAX_WINDOWS,
                  window_seconds: float = WINDOW_SECONDS,
                  uncertain_below: float = UNCERTAIN_BELOW) -> LanguageDecision:
    """The language of 16-kHz mono `audio` by a vote of `model` (a faster-whisper
    WhisperModel) over up to `max_windows` windows of speech across the file."""
    started = time.perf_counter()
    if not model.model.is_multilingual:
        # An English-only model (tiny.en) has no language tokens to ask.
        return LanguageDecision("en", 1.0, "model", {"en": 1.0}, (), 0.0, uncertain_below)
    windows = speech_windows(audio, window_seconds)
    totals: dict[str, float] = {}
    votes: list[WindowVote] = []
    for index in _spread(len(windows), max(1, max_windows)):
        first, last, speech = windows[index]
        language, probability, every = model.detect_language(audio=speech)
        weight = len(speech) / SAMPLE_RATE
        for code, p in every:
            totals[code] = totals.get(code, 0.0) + p * weight
        votes.append(WindowVote(first / SAMPLE_RATE, last / SAMPLE_RATE, weight,
                                language_label(language), float(probability)))
    elapsed = time.perf_counter() - started
    whole = sum(totals.values())
    if not whole:
        return LanguageDecision(UNKNOWN, 0.0, "vote", {}, (), elapsed, uncertain_below)
    shares = {language_label(code): total / whole
              for code, total in sorted(totals.items(), key=lambda kv: -kv[1])
              if total / whole >= 0.001}
    language, confidence = next(iter(shares.items()))
    decision = LanguageDecision(language, confidence, "vote", shares, tuple(votes), elapsed,
                                uncertain_below)
    log.info("language %s (%.2f%s) by vote of %d windows in %.2fs: %s", language, confidence,
             ", uncertain" if decision.uncertain else "", len(votes), elapsed,
             ", ".join(f"{code} {share:.2f}" for code, share in decision.mix.items()))
    return decision
