"""Where the speech is, from Silero VAD: one pass over the audio gives both what Whisper is fed
and where subtitle cues start and end.

faster-whisper's VAD (`get_speech_timestamps` with the default `VadOptions`) joins speech across
pauses under 2 s and pads every chunk by 400 ms: right for feeding Whisper (context, no clipped
word edges), useless for timing a cue. Whisper's own word timestamps are no better at a pause:
on clean speech tiny.en put the first word of a sentence up to 0.6 s early or 0.25 s late. The
VAD's per-window speech probabilities, read with short pauses kept and no padding, say where
speech begins and ends to one window (32 ms). `detect` runs Silero once and derives both:

* `Speech.chunks`: exactly faster-whisper's default chunks (the same state machine on the same
  probabilities; `tests/unit/pipeline/test_speech.py` holds them equal to faster-whisper's own
  call), so the transcript is the one `transcribe(vad_filter=True)` gives;
* `Speech.regions`: speech in milliseconds, split at pauses of `REGION_MIN_SILENCE_MS`, each
  edge moved out to where the probability falls under `EDGE_PROBABILITY` (a word's soft onset,
  "P", "s", "h", is under Silero's 0.5 for a window or two, sometimes eight).
"""

from __future__ import annotations

import dataclasses

SAMPLE_RATE = 16000
WINDOW = 512                      # samples per Silero probability (32 ms)
# faster-whisper's defaults (VadOptions): speech from 0.5, silence under 0.5 - 0.15.
THRESHOLD = 0.5
NEG_THRESHOLD = THRESHOLD - 0.15
WHISPER_MIN_SILENCE_MS = 2000
WHISPER_PAD_MS = 400
# A cue after a pause starts at a region's start: pauses between phrases last 150 ms and more,
# a stop consonant's closure well under 100 ms.
REGION_MIN_SILENCE_MS = 100
EDGE_PROBABILITY = 0.15


@dataclasses.dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech with no pause of REGION_MIN_SILENCE_MS in it, in ms of the audio."""
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Speech:
    """What the VAD found in one file's audio."""
    regions: tuple[SpeechRegion, ...]           # precise, for cue timing
    chunks: tuple[tuple[int, int], ...] = ()    # samples: what Whisper hears (padded, joined)

    def whisper_chunks(self) -> list[dict]:
        """The chunks as faster-whisper's functions take them."""
        return [{"start": start, "end": end} for start, end in self.chunks]


def speech_probabilities(audio):
    """Silero's speech probability of each 512-sample window (faster-whisper's model and
    padding, as in `get_speech_timestamps`)."""
    import numpy as np
    from faster_whisper.vad import get_vad_model

    padded = np.pad(audio, (0, WINDOW - audio.shape[0] % WINDOW))
    return np.asarray(get_vad_model()(padded)).reshape(-1)


def detect(audio) -> Speech:
    """Speech regions and Whisper's chunks of 16 kHz mono audio, from one Silero pass."""
    probs = speech_probabilities(audio)
    samples = int(audio.shape[0])
    chunks = _pad(_runs(probs, samples, WHISPER_MIN_SILENCE_MS), samples)
    return Speech(_regions(probs, samples), tuple(chunks))


def _runs(probs, samples: int, min_silence_ms: int) -> list[list[int]]:
    """Speech as [start, end] samples: faster-whisper's `get_speech_timestamps` state machine
    with its default thresholds, no minimum speech length, no maximum, before padding."""
    min_silence = SAMPLE_RATE * min_silence_ms / 1000
    runs: list[list[int]] = []
    start = temp_end = None
    for i, prob in enumerate(probs):
        at = WINDOW * i
        if prob >= THRESHOLD:
            temp_end = None
            if start is None:
                start = at
            continue
        if prob < NEG_THRESHOLD and start is not None:
            if temp_end is None:
                temp_end = at
            if at - temp_end >= min_silence:
                if temp_end > start:
                    runs.append([start, temp_end])
                start = temp_end = None
    if start is not None and samples > start:
        runs.append([start, samples])
    return runs


def _pad(runs: list[list[int]], samples: int) -> list[tuple[int, int]]:
    """faster-whisper's padding: WHISPER_PAD_MS each side, half the silence between two runs
    closer than twice that."""
    pad = SAMPLE_RATE * WHISPER_PAD_MS // 1000
    runs = [run[:] for run in runs]
    for i, run in enumerate(runs):
        if i == 0:
            run[0] = max(0, run[0] - pad)
        if i != len(runs) - 1:
            silence = runs[i + 1][0] - run[1]
            if silence < 2 * pad:
                run[1] += silence // 2
                runs[i + 1][0] = max(0, runs[i + 1][0] - silence // 2)
            else:
                run[1] = min(samples, run[1] + pad)
                runs[i + 1][0] = max(0, runs[i + 1][0] - pad)
        else:
            run[1] = min(samples, run[1] + pad)
    return [(start, end) for start, end in runs]


def _regions(probs, samples: int) -> tuple[SpeechRegion, ...]:
    """Runs split at short pauses, their edges out to where the probability falls under
    EDGE_PROBABILITY (never into the neighbouring run), in ms."""
    runs = [[start // WINDOW, -(-end // WINDOW)]
            for start, end in _runs(probs, samples, REGION_MIN_SILENCE_MS)]
    for i, run in enumerate(runs):
        floor = runs[i - 1][1] if i else 0
        ceiling = runs[i + 1][0] if i + 1 < len(runs) else len(probs)
        while run[0] > floor and probs[run[0] - 1] >= EDGE_PROBABILITY:
            run[0] -= 1
        while run[1] < ceiling and probs[run[1]] >= EDGE_PROBABILITY:
            run[1] += 1
    return tuple(SpeechRegion(start * WINDOW * 1000 // SAMPLE_RATE,
                              min(end * WINDOW, samples) * 1000 // SAMPLE_RATE)
                 for start, end in runs)
