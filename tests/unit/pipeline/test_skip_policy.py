"""The skip policy: each rule against real files on disk, and the registry a new rule joins."""

import types
from pathlib import Path

import pytest

from scribewatch.pipeline import skip_policy
from scribewatch.pipeline.errors import SkipJob
from scribewatch.pipeline.media import ProbeResult
from scribewatch.pipeline.skip_policy import BEFORE_READING, PROBED, TRANSCRIBED, Facts
from scribewatch.pipeline.transcript import Segment, Transcript

ON = types.SimpleNamespace(skip_existing_subtitles=True, skip_embedded_subtitles=True)
OFF = types.SimpleNamespace(skip_existing_subtitles=False, skip_embedded_subtitles=False)


def reason(point, settings, facts):
    try:
        skip_policy.check(point, settings, facts)
    except SkipJob as s:
        return s.reason
    return None


def transcript(text: str, language: str = "en") -> Transcript:
    segments = (Segment(0.0, 1.0, text, ()),) if text else ()
    return Transcript(language=language, language_probability=0.9, duration=11.0,
                      segments=segments, model="tiny.en")


@pytest.fixture
def film(tmp_path) -> Path:
    (tmp_path / "Film.mkv").write_bytes(b"\x1a\x45\xdf\xa3")
    return tmp_path / "Film.mkv"


def test_a_subtitle_in_the_target_language_skips_before_reading(film):
    facts = Facts(film, film.parent, "en", None)
    assert reason(BEFORE_READING, ON, facts) is None
    (film.parent / "Film.en.srt").write_text("1\n")
    assert reason(BEFORE_READING, ON, facts) == "subtitle_exists"
    assert reason(BEFORE_READING, OFF, facts) is None
    # One this file's job wrote before is its own to replace (`retry --path`).
    own = Facts(film, film.parent, "en", None, own_outputs=(str(film.parent / "Film.en.srt"),))
    assert reason(BEFORE_READING, ON, own) is None
    # Language unknown before transcription: decided after it, for the detected language.
    unknown = Facts(film, film.parent, None, None)
    assert reason(BEFORE_READING, ON, unknown) is None
    assert reason(TRANSCRIBED, ON, Facts(film, film.parent, None, None,
                                         transcript=transcript("hello"))) == "subtitle_exists"
    assert reason(TRANSCRIBED, ON, Facts(film, film.parent, None, None,
                                         transcript=transcript("hola", "es"))) is None


def test_the_output_folder_is_searched_too(tmp_path, film):
    out = tmp_path / "out"
    out.mkdir()
    (out / "Film.en.vtt").write_text("WEBVTT\n")
    assert reason(BEFORE_READING, ON, Facts(film, film.parent, "en", out)) == "subtitle_exists"


def test_an_embedded_stream_in_the_target_language_skips_after_probe(film):
    probe = ProbeResult(duration=11.0, audio_codec="flac", audio_streams=1, channels=1,
                        sample_rate=16000, subtitle_languages=("de", "en"), container="matroska")
    assert reason(PROBED, ON, Facts(film, film.parent, "en", None, probe=probe)) \
        == "embedded_subtitle"
    assert reason(PROBED, ON, Facts(film, film.parent, "fr", None, probe=probe)) is None
    assert reason(PROBED, ON, Facts(film, film.parent, None, None, probe=probe)) is None
    assert reason(PROBED, OFF, Facts(film, film.parent, "en", None, probe=probe)) is None


def test_no_speech_is_skipped_whatever_the_settings(film):
    assert reason(TRANSCRIBED, OFF, Facts(film, film.parent, "en", None,
                                          transcript=transcript("  "))) == "no_speech"
    assert reason(TRANSCRIBED, OFF, Facts(film, film.parent, "en", None,
                                          transcript=transcript("hello"))) is None


def test_a_new_rule_is_one_registered_function(film, monkeypatch):
    monkeypatch.setattr(skip_policy, "RULES", {p: list(r) for p, r in skip_policy.RULES.items()})

    @skip_policy.rule(PROBED)
    def everything_with_subtitles(settings, facts):
        if settings.skip_embedded_subtitles and facts.probe.subtitle_languages:
            return SkipJob("embedded_subtitle", f"{facts.path}: has subtitles")
        return None

    probe = ProbeResult(11.0, "flac", 1, 1, 16000, ("de",), "matroska")
    assert reason(PROBED, ON, Facts(film, film.parent, "en", None, probe=probe)) \
        == "embedded_subtitle"
