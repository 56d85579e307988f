"""pipeline.media.tracks: audio tracks read from real MKVs (ffmpeg: German, English, a
commentary) and the choice of the one to transcribe; decode reads that track only."""

from __future__ import annotations

import numpy as np
import pytest

from scribewatch.pipeline.media.reader import decode, probe
from scribewatch.pipeline.media.tracks import AudioTrack, choose_audio_track


def chosen(path, preferred=()):
    return choose_audio_track(probe(path).audio_tracks, tuple(preferred))


def test_tracks_are_read_with_language_default_flag_and_commentary(language_media):
    tracks = probe(language_media["two_tracks_de_default"]).audio_tracks
    assert [(t.index, t.tag, t.language, t.default, t.commentary) for t in tracks] == [
        (0, "ger", "de", True, False), (1, "eng", "en", False, False),
        (2, "eng", "en", False, True)]
    assert tracks[2].title == "Director's Commentary"


@pytest.mark.parametrize("name, index", [("two_tracks_de_default", 0),
                                         ("two_tracks_en_default", 1)])
def test_without_preference_the_default_flagged_track(language_media, name, index):
    assert chosen(language_media[name]).index == index


@pytest.mark.parametrize("preferred, index", [(["ja", "en"], 1), (["ger"], 0),
                                              (["German", "en"], 0), (["fr"], 1)])
def test_preferred_languages_in_order(language_media, preferred, index):
    assert chosen(language_media["two_tracks_en_default"], preferred).index == index


def test_a_commentary_is_never_chosen_by_default(language_media):
    # First, flagged default, and in the preferred language: still not the film's audio.
    assert chosen(language_media["commentary_first"]).index == 1
    assert chosen(language_media["commentary_first"], ["en"]).index == 1
    # Only a commentary there: that is what there is.
    only = (AudioTrack(3, "en", "eng", "Commentary", True, True),)
    assert choose_audio_track(only).index == 3
    assert choose_audio_track(()) is None


def test_the_first_track_when_nothing_is_flagged():
    tracks = (AudioTrack(1, None, None), AudioTrack(2, "de", "ger"))
    assert choose_audio_track(tracks).index == 1


def test_decode_reads_the_chosen_track_only(language_media):
    path = language_media["two_tracks_de_default"]
    german, english, commentary = (decode(path, i) for i in (0, 1, 2))
    # The halves are 30.5 s and 29.4 s of speech, jfk.flac 11 s.
    assert abs(len(german) / 16000 - 29.4) < 1 and abs(len(english) / 16000 - 30.5) < 1
    assert abs(len(commentary) / 16000 - 11.0) < 0.5
    assert not np.array_equal(german[:16000], english[:16000])
    assert len(decode(path)) == len(german)          # no index: the first decodable one
