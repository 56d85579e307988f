"""Speech whose timing is known without Whisper: sentences of the shared real speech joined by
silences of known lengths, each sentence's onset and offset measured on the clip itself from
its signal energy, to 10 ms.

    from tests.harness.timed_speech import timed_speech
    speech = timed_speech(12, seed=1)     # .audio (16 kHz float32), .sentences, .text

The sentences are `bench.media`'s clips (jfk.flac and the licence reading cut at its pauses):
their reference texts are known, so a transcript of the joined audio has a word error rate as
well. How well subtitle cues sit on this speech is `tests/harness/quality.py`'s `cue_timing`.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from bench.media import CLIP_TEXT, LICENSE_PARTS, RATE, clip

FRAME = RATE // 100               # 10 ms
# A frame is speech when its RMS is within 35 dB of the clip's loudest frame and over three
# times the clip's own floor (the quietest 5 % of its frames): the soft edges of "P", "s", "sh"
# are kept, jfk.flac's room noise is not.
DYNAMIC_RANGE_DB = 35.0
FLOOR_FACTOR = 3.0
# jfk.flac ends in applause after "…your country." (from 10.2 s): not speech, cut off.
_SPEECH_ENDS = {"jfk": 10.25}
_FADE = RATE * 20 // 1000         # the cut faded out over 20 ms, so it does not click
SENTENCES = ("jfk", *LICENSE_PARTS)
SILENCE_SECONDS = (0.7, 2.5)      # between sentences (and before the first)


@dataclasses.dataclass(frozen=True)
class TimedSentence:
    name: str                     # the bench.media clip
    text: str                     # its reference text
    onset: float                  # seconds in the joined audio, to 10 ms
    offset: float


@dataclasses.dataclass(frozen=True)
class TimedSpeech:
    audio: np.ndarray             # 16 kHz mono float32
    sentences: tuple[TimedSentence, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def sentence_audio(name: str) -> np.ndarray:
    """One sentence's clip, as bench.media cuts it (less jfk.flac's applause)."""
    audio = clip(name)
    if name in _SPEECH_ENDS:
        audio = audio[:int(_SPEECH_ENDS[name] * RATE)].copy()
        audio[-_FADE:] *= np.linspace(1.0, 0.0, _FADE, dtype=np.float32)
    return audio


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    """(onset, offset) in seconds of the speech in a clip, from 10-ms RMS frames: the first
    and the end of the last frame over the threshold (DYNAMIC_RANGE_DB, FLOOR_FACTOR)."""
    frames = len(audio) // FRAME
    rms = np.sqrt((audio[:frames * FRAME].reshape(frames, FRAME).astype(np.float64) ** 2)
                  .mean(axis=1))
    floor = np.percentile(rms[rms > 0], 5)
    threshold = max(rms.max() * 10 ** (-DYNAMIC_RANGE_DB / 20), FLOOR_FACTOR * floor)
    loud = np.nonzero(rms > threshold)[0]
    return float(loud[0]) / 100, float(loud[-1] + 1) / 100


def timed_speech(count: int, seed: int = 0,
                 silences: tuple[float, float] = SILENCE_SECONDS) -> TimedSpeech:
    """`count` sentences (shuffled decks of SENTENCES, never one twice in a row: three alike in
    a row would look like a decoding loop to the hallucination guard) after silences drawn from
    `silences`, whole milliseconds each, and one second of silence at the end."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < count:
        deck = list(SENTENCES)
        rng.shuffle(deck)
        if names and deck[0] == names[-1]:
            deck.append(deck.pop(0))
        names += deck
    parts, sentences, at = [], [], 0
    for name in names[:count]:
        gap = round(rng.uniform(*silences) * 1000) * RATE // 1000
        audio = sentence_audio(name)
        onset, offset = speech_span(audio)
        start = (at + gap) / RATE
        sentences.append(TimedSentence(name, CLIP_TEXT[name], round(start + onset, 3),
                                       round(start + offset, 3)))
        parts += [np.zeros(gap, np.float32), audio]
        at += gap + len(audio)
    parts.append(np.zeros(RATE, np.float32))
    return TimedSpeech(np.concatenate(parts), tuple(sentences))
