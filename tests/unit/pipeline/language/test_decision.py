"""pipeline.language.decision: the decision chain on real containers (ffmpeg-tagged) and real speech
with the real multilingual `base` model: forced → tag → English-only model → vote → uncertain."""

from __future__ import annotations

from pathlib import Path

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.language.decision import (
    ChainSettings,
    Hint,
    decide_before_audio,
    decide_by_vote,
    forced_language,
    target_before_reading,
)
from scribewatch.pipeline.language.vote import vote_language
from scribewatch.pipeline.media.reader import decode, probe
from scribewatch.pipeline.media.tracks import choose_audio_track

AUTO = ChainSettings()
ENGLISH_ONLY = ChainSettings(english_only=True)


def settings(**flags) -> ChainSettings:
    cfg = config.load(None, environ={}, flags={"watch_dirs": ["/media"], **flags})
    return ChainSettings.from_config(cfg, flags.get("model", "base"))


@pytest.fixture(scope="module")
def base(base_model_dir):
    from faster_whisper import WhisperModel

    return WhisperModel(base_model_dir, device="cpu", compute_type="int8", cpu_threads=2)


def before(chain: ChainSettings, path: Path):
    return decide_before_audio(chain, path, choose_audio_track(probe(path).audio_tracks))


# -- forced -------------------------------------------------------------------------------------
def test_the_deepest_folder_setting_wins_then_the_language_setting(tmp_path):
    chain = settings(folder_languages={str(tmp_path / "anime"): "jpn",
                                       str(tmp_path / "anime" / "dub"): "English"},
                     language="fr")
    assert forced_language(chain, tmp_path / "anime" / "a.mkv")[0] == "ja"
    assert forced_language(chain, tmp_path / "anime" / "dub" / "b.mkv")[0] == "en"
    # A folder whose name only starts like the setting's is not under it.
    assert forced_language(chain, tmp_path / "anime2" / "c.mkv") == (
        "fr", "language setting")
    assert forced_language(settings(), tmp_path / "x.mkv") is None
    assert target_before_reading(settings(model="tiny.en"), tmp_path / "x.mkv") == "en"
    assert target_before_reading(settings(), tmp_path / "x.mkv") is None


def test_a_bad_folder_language_is_a_config_error():
    with pytest.raises(config.ConfigError, match="folder_languages"):
        config.load(None, environ={}, flags={"folder_languages": {"/media/anime": "klingon"}})


def test_a_forced_language_beats_the_tag(tmp_path, language_media):
    chain = settings(folder_languages={str(language_media["german_ger"].parent): "ja"})
    choice, _ = before(chain, language_media["german_ger"])
    assert (choice.language, choice.source, choice.probability) == ("ja", "forced", 1.0)
    assert [s.source for s in choice.steps] == ["forced"]


# -- tag ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, language", [("german_ger", "de"), ("german_deu", "de"),
                                            ("english_eng", "en"), ("jfk_ger", "de")])
def test_the_audio_tag_decides_in_any_iso_639_2_form(language_media, name, language):
    choice, steps = before(AUTO, language_media[name])
    assert (choice.language, choice.source, choice.skip) == (language, "tag", None)
    assert [s.source for s in steps] == ["forced", "tag"] and steps[0].language is None


@pytest.mark.parametrize("name", ["german_und", "german_untagged", "german"])
def test_und_or_no_tag_leaves_it_to_the_vote(language_media, name):
    choice, steps = before(AUTO, language_media[name])
    assert choice is None
    assert [(s.source, s.language) for s in steps] == [("forced", None), ("tag", None)]


# -- the English-only model ---------------------------------------------------------------------
def test_an_english_only_model_never_detects(language_media):
    choice, _ = before(ENGLISH_ONLY, language_media["german"])      # untagged: assumed English
    assert (choice.language, choice.source, choice.skip) == ("en", "model", None)
    choice, _ = before(ENGLISH_ONLY, language_media["english_eng"])
    assert (choice.language, choice.source, choice.skip) == ("en", "tag", None)


@pytest.mark.parametrize("name", ["german_ger", "german_deu"])
def test_an_english_only_model_skips_a_file_tagged_otherwise(language_media, name):
    choice, _ = before(ENGLISH_ONLY, language_media[name])
    assert choice.skip.reason == "language_mismatch" and choice.language == "de"
    assert "English only" in choice.skip.message


# -- the hint: what Sonarr or Radarr said at import (pipeline/arr/) ----------------------------
SONARR_JA = Hint("ja", "Sonarr: series.originalLanguage ja, audioLanguages unknown")


def test_a_hint_decides_an_untagged_file_before_any_listening(language_media):
    track = choose_audio_track(probe(language_media["german_und"]).audio_tracks)
    choice, steps = decide_before_audio(AUTO, language_media["german_und"], track,
                                        Hint("de", "Radarr: movie.originalLanguage de"))
    assert (choice.language, choice.source, choice.probability, choice.skip) == (
        "de", "hint", 1.0, None)
    assert [(s.source, s.language) for s in steps] == [("forced", None), ("tag", None),
                                                       ("hint", "de")]
    assert "Radarr" in choice.summary


def test_the_tag_and_a_forced_language_beat_the_hint(language_media):
    choice, _ = decide_before_audio(AUTO, language_media["german_ger"], choose_audio_track(
        probe(language_media["german_ger"]).audio_tracks), SONARR_JA)
    assert (choice.language, choice.source) == ("de", "tag")
    chain = settings(folder_languages={str(language_media["german"].parent): "fr"})
    choice, _ = decide_before_audio(chain, language_media["german"], None, SONARR_JA)
    assert (choice.language, choice.source) == ("fr", "forced")


def test_an_english_only_model_is_not_overruled_by_a_hint_of_another_language(language_media):
    """A series' original language is Japanese, the file may well be the English dub: the
    hint does not skip it as a mismatch; an English hint is recorded as the hint."""
    choice, steps = decide_before_audio(ENGLISH_ONLY, language_media["german"], None, SONARR_JA)
    assert (choice.language, choice.source, choice.skip) == ("en", "model", None)
    assert [s.source for s in steps] == ["forced", "tag", "hint", "model"]
    assert steps[2].language is None and "English only" in steps[2].note
    english = Hint("en", "Sonarr: series.originalLanguage en")
    choice, _ = decide_before_audio(ENGLISH_ONLY, language_media["german"], None, english)
    assert (choice.language, choice.source) == ("en", "hint")


def test_a_stored_hint_reads_back_or_is_none():
    assert Hint.from_dict(SONARR_JA.as_dict()) == SONARR_JA
    assert Hint.from_dict(None) is None and Hint.from_dict({"note": "x"}) is None


# -- the vote on real speech --------------------------------------------------------------------
def test_the_german_half_is_voted_german_with_confidence(base, language_media):
    path = language_media["german"]
    _, steps = before(AUTO, path)
    audio = decode(path)
    choice = decide_by_vote(AUTO, path, steps, lambda: vote_language(base, audio))
    assert (choice.language, choice.source, choice.skip) == ("de", "vote", None)
    assert choice.probability > 0.95
    assert [s.source for s in choice.steps] == ["forced", "tag", "vote"]


def test_jfk_is_voted_english(base, media):
    audio = decode(media / "jfk.flac")
    choice = decide_by_vote(AUTO, media / "jfk.flac", (), lambda: vote_language(base, audio))
    assert (choice.language, choice.source) == ("en", "vote") and choice.probability > 0.8


@pytest.fixture(scope="module")
def whole_vote(base, media):
    """The whole multilingual.mp3 (English, then German): about half each."""
    return vote_language(base, decode(media / "multilingual.mp3"))


def test_an_uncertain_vote_is_skipped_by_default(whole_vote, media):
    chain = settings()
    assert chain.uncertain_action == "skip" and chain.min_confidence == 0.6
    choice = decide_by_vote(chain, media / "multilingual.mp3", (), lambda: whole_vote)
    assert choice.skip.reason == "language_uncertain"
    assert choice.source == "vote" and 0.35 < choice.probability < 0.65
    assert "de" in choice.skip.message and "en" in choice.skip.message


def test_an_uncertain_vote_uses_the_default_language_when_so_configured(whole_vote, media):
    chain = settings(language_uncertain_action="default", default_language="ger")
    choice = decide_by_vote(chain, media / "multilingual.mp3", (), lambda: whole_vote)
    assert (choice.language, choice.source, choice.skip) == ("de", "default", None)
    assert choice.probability == whole_vote.confidence
    assert [s.source for s in choice.steps] == ["vote", "default"]
    # A lower threshold accepts the vote's winner as it is.
    relaxed = settings(language_min_confidence=0.3)
    choice = decide_by_vote(relaxed, media / "multilingual.mp3", (), lambda: whole_vote)
    assert choice.source == "vote" and choice.skip is None
    assert choice.language == whole_vote.language


def test_an_english_only_model_in_a_folder_of_another_name_is_still_the_model(model_dir, media):
    """A `*.en` model given as a folder whose name does not say so: the vote finds no language
    tokens to ask, and the decision is the model's, not a vote's (real tiny.en)."""
    from faster_whisper import WhisperModel

    tiny = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    audio = decode(media / "jfk.flac")
    choice = decide_by_vote(AUTO, media / "jfk.flac", (), lambda: vote_language(tiny, audio))
    assert (choice.language, choice.source, choice.probability, choice.skip) == (
        "en", "model", 1.0, None)


def test_the_settings_name_the_decisions_they_will_surely_make():
    from scribewatch.pipeline.language.decision import ChainSettings

    chain = ChainSettings(language=None, folder_languages=(("/media/anime", "ja"),),
                          english_only=True, uncertain_action="default", default_language="de")
    assert chain.certain_decisions() == (("de", "default"), ("en", "model"), ("ja", "forced"))
    assert ChainSettings().certain_decisions() == ()          # auto, multilingual, skip
