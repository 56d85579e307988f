"""pipeline.speech: one Silero pass gives faster-whisper's own chunks (the same transcript) and
speech regions that start where the speech does (onsets measured without the VAD)."""

from __future__ import annotations

import numpy as np
import pytest

from scribewatch.pipeline import speech
from scribewatch.pipeline.speech import Speech, SpeechRegion, detect
from tests.harness import media as gen
from tests.harness.timed_speech import timed_speech


def _probs(*runs: tuple[float, int]) -> np.ndarray:
    """Probabilities from (value, windows) runs."""
    return np.concatenate([np.full(count, value, np.float32) for value, count in runs])


def test_chunks_are_faster_whispers_own(media):
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    quiet = np.zeros(3 * gen.RATE, np.float32)
    corpus = timed_speech(4, seed=3).audio
    for audio in (gen.load_speech(media / "jfk.flac"), gen.load_speech(media / "multilingual.mp3"),
                  np.concatenate([quiet, corpus, quiet, quiet, corpus]), quiet):
        assert detect(audio).whisper_chunks() == get_speech_timestamps(audio, VadOptions())


def test_regions_start_and_end_on_the_speech():
    corpus = timed_speech(6, seed=5)
    regions = detect(corpus.audio).regions
    for sentence in corpus.sentences:
        starts = [r.start / 1000 - sentence.onset for r in regions]
        ends = [r.end / 1000 - sentence.offset for r in regions]
        # One window (32 ms) of Silero plus the 10 ms of the energy frames.
        assert min(abs(d) for d in starts) <= 0.05, (sentence, starts)
        assert min(abs(d) for d in ends) <= 0.1, (sentence, ends)
    # No region in the silences between sentences.
    for before, after in zip(corpus.sentences, corpus.sentences[1:]):
        assert not [r for r in regions
                    if before.offset + 0.1 < r.start / 1000 < after.onset - 0.1]


def test_region_edges_follow_the_probability_down_to_the_edge_floor():
    # 10 windows of silence, a soft onset (0.2, 0.4: under Silero's 0.5), speech, a 0.3 tail,
    # silence: the region runs from the first soft window to the end of the tail.
    probs = _probs((0.0, 10), (0.2, 1), (0.4, 1), (0.9, 20), (0.3, 2), (0.0, 20))
    samples = len(probs) * speech.WINDOW
    assert speech._regions(probs, samples) == (SpeechRegion(320, 1088),)   # windows 10 to 34


def test_a_pause_of_100_ms_splits_regions_and_a_shorter_one_does_not():
    def regions(pause_windows):
        probs = _probs((0.9, 10), (0.0, pause_windows), (0.9, 10), (0.0, 10))
        return speech._regions(probs, len(probs) * speech.WINDOW)

    assert len(regions(3)) == 1                      # 96 ms: a stop consonant's closure
    assert regions(5) == (SpeechRegion(0, 320), SpeechRegion(480, 800))   # 160 ms: a pause


def test_speech_is_plain_data():
    found = Speech((SpeechRegion(100, 900),), ((0, 16000),))
    assert found.whisper_chunks() == [{"start": 0, "end": 16000}]
    with pytest.raises(AttributeError):
        found.regions = ()                                       # frozen
