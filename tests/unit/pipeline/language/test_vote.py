"""pipeline.language: the language vote over windows of real speech with the real `base` model.

multilingual.mp3 is a licence read in English (0-30.5 s) and then in German: the first 30 s
alone say "en" with p 0.999; the vote must see both languages."""

from __future__ import annotations

import numpy as np
import pytest

from scribewatch.pipeline.language.vote import (
    MAX_WINDOWS,
    SAMPLE_RATE,
    UNCERTAIN_BELOW,
    WINDOW_SECONDS,
    _spread,
    speech_windows,
    vote_language,
)
from scribewatch.pipeline.model import resolve_model

GERMAN_FROM = 30.5


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from faster_whisper import WhisperModel

    folder, _ = resolve_model("base", str(tmp_path_factory.mktemp("models")))
    return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="module")
def licence(media) -> np.ndarray:
    from scribewatch.pipeline.stages import decode

    return decode(media / "multilingual.mp3")


def test_a_mixed_file_is_reported_as_a_mix(base_model, licence):
    decision = vote_language(base_model, licence)
    assert decision.source == "vote"
    assert set(decision.mix) == {"en", "de"}
    assert all(0.35 < share < 0.65 for share in decision.mix.values()), decision.shares
    assert decision.uncertain and decision.confidence < UNCERTAIN_BELOW
    assert decision.language in {"en", "de"}
    # Windows spread from start to end, each judged on its own half.
    assert len(decision.windows) == MAX_WINDOWS
    assert decision.windows[0].start < 5 and decision.windows[-1].end > 55
    for window in decision.windows:
        if window.end <= GERMAN_FROM:
            assert (window.language, window.probability > 0.9) == ("en", True)
        elif window.start >= GERMAN_FROM - 1:      # VAD may start a window just before
            assert (window.language, window.probability > 0.9) == ("de", True)


@pytest.mark.parametrize("half, language", [("english", "en"), ("german", "de")])
def test_each_half_alone_is_one_language_with_confidence(base_model, licence, half, language):
    cut = int(GERMAN_FROM * SAMPLE_RATE)
    audio = licence[:cut] if half == "english" else licence[cut:]
    decision = vote_language(base_model, audio)
    assert (decision.language, decision.uncertain) == (language, False)
    assert decision.confidence > 0.9
    assert set(decision.mix) == {language}
    assert len(decision.windows) >= 3                   # ~29 s of speech, 10-s windows
    assert all(w.language == language for w in decision.windows)


def test_an_english_only_model_is_not_asked(model_dir, licence):
    from faster_whisper import WhisperModel

    tiny_en = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    decision = vote_language(tiny_en, licence)
    assert (decision.language, decision.confidence, decision.source) == ("en", 1.0, "model")


def test_silence_is_unknown(base_model):
    decision = vote_language(base_model, np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    assert (decision.language, decision.confidence, decision.windows) == ("unknown", 0.0, ())
    assert decision.uncertain


def test_windows_hold_at_most_window_seconds_of_speech(licence):
    windows = speech_windows(licence)
    assert len(windows) >= 6
    assert all(len(speech) <= WINDOW_SECONDS * SAMPLE_RATE for _, _, speech in windows)
    assert [first for first, _, _ in windows] == sorted(first for first, _, _ in windows)


def test_spread_keeps_the_ends():
    assert _spread(10, 4) == [0, 3, 6, 9]
    assert _spread(3, 6) == [0, 1, 2]
    assert _spread(5, 1) == [2]                         # one window: the middle
