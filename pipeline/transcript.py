"""What the transcribe stage produces and the write stage renders: plain data, no Whisper types."""

from __future__ import annotations

import dataclasses

from .speech import Speech


@dataclasses.dataclass(frozen=True)
class Word:
    start: float          # seconds from the start of the audio
    end: float
    text: str             # as Whisper gives it, usually with a leading space (" Americans,")
    probability: float = 1.0


@dataclasses.dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclasses.dataclass(frozen=True)
class Transcript:
    language: str                 # ISO 639-1 code, e.g. "en"
    language_probability: float
    duration: float               # audio seconds
    segments: tuple[Segment, ...]
    model: str = ""               # short model name, for the JSON output
    suspect: tuple[str, ...] = () # what the hallucination guard flagged (empty when clean)
    # Where the VAD heard speech (cues start and end on it); None when the VAD did not run.
    speech: Speech | None = None

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments).strip()
