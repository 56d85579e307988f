"""Sonarr's and Radarr's webhook bodies, read: every event type of both apps. The bodies are
built from their own classes' field names (tests/harness/arr.py cites the files:
src/NzbDrone.Core/Notifications/Webhook/ in Sonarr/Sonarr and Radarr/Radarr)."""

from __future__ import annotations

import pytest

from scribewatch.pipeline.arr import payload
from scribewatch.pipeline.arr.payload import BadPayload, Imported, Other, Renamed, parse
from tests.harness import arr

TV, MOVIES = "/tv/Show", "/movies/Film (2001)"


def test_a_sonarr_import_is_its_episode_file_with_the_series_language_as_hint():
    event = parse("sonarr", arr.sonarr_download(f"{TV}/S01/e1.mkv", TV))
    assert isinstance(event, Imported) and not event.upgrade and event.deleted == ()
    (f,) = event.files
    assert f.path == f"{TV}/S01/e1.mkv"
    assert (f.hint.language, f.hint.note) == (
        "ja", "Sonarr: series.originalLanguage ja, audioLanguages ja")


def test_a_sonarr_upgrade_names_the_files_it_deleted():
    event = parse("sonarr", arr.sonarr_download(f"{TV}/S01/e1 WEBDL.mkv", TV,
                                                upgrade_of=[f"{TV}/S01/e1 HDTV.mkv"]))
    assert event.upgrade and event.deleted == (f"{TV}/S01/e1 HDTV.mkv",)


def test_sonarr_import_complete_sends_every_file_of_the_download():
    doc = arr.sonarr_download(f"{TV}/S01/e1.mkv", TV)
    doc["episodeFiles"] = [doc.pop("episodeFile"),
                           arr.episode_file(f"{TV}/S01/e2.mkv", TV, audio=())]
    event = parse("sonarr", doc)
    assert [f.path for f in event.files] == [f"{TV}/S01/e1.mkv", f"{TV}/S01/e2.mkv"]
    assert event.files[1].hint.note.endswith("audioLanguages unknown")


def test_a_radarr_import_and_upgrade():
    event = parse("radarr", arr.radarr_download(f"{MOVIES}/film.mkv", MOVIES,
                                                upgrade_of=[f"{MOVIES}/film.avi"]))
    assert [f.path for f in event.files] == [f"{MOVIES}/film.mkv"]
    assert event.upgrade and event.deleted == (f"{MOVIES}/film.avi",)
    assert event.files[0].hint.language == "en"
    assert event.files[0].hint.note.startswith("Radarr: movie.originalLanguage en")


@pytest.mark.parametrize("app, doc", [
    ("sonarr", arr.sonarr_rename(TV, [(f"{TV}/a.mkv", f"{TV}/S01/b.mkv")])),
    ("radarr", arr.radarr_rename(MOVIES, [(f"{MOVIES}/a.mkv", f"{MOVIES}/b.mkv")]))])
def test_a_rename_is_previous_path_and_path_per_file(app, doc):
    event = parse(app, doc)
    assert isinstance(event, Renamed) and len(event.moves) == 1
    old, new = event.moves[0]
    assert old.endswith("/a.mkv") and new.endswith("/b.mkv")


@pytest.mark.parametrize("app, doc", [("sonarr", arr.sonarr_test()),
                                      ("radarr", arr.radarr_test())])
def test_the_test_event(app, doc):
    assert parse(app, doc) == Other("Test")


def test_events_scribewatch_does_nothing_with_are_taken():
    assert parse("radarr", {"eventType": "Grab", "movie": {}}) == Other("Grab")
    assert parse("sonarr", {"eventType": "Health", "level": "warning"}) == Other("Health")


@pytest.mark.parametrize("doc, why", [
    ([], "not a JSON object"), ({}, "no eventType"),
    ({"eventType": "Download", "series": {}}, "no episodeFile"),
    ({"eventType": "Download", "series": {}, "episodeFile": {"path": ""}}, "no path"),
    ({"eventType": "Rename", "series": {}, "renamedEpisodeFiles": [{"path": "/tv/b"}]},
     "previousPath"),
    ({"eventType": "Rename", "renamedEpisodeFiles": "x"}, "list of objects")])
def test_a_body_that_is_no_webhook_says_why(doc, why):
    with pytest.raises(BadPayload, match=why):
        parse("sonarr", doc)
    with pytest.raises(BadPayload, match="unknown app"):
        parse("lidarr", {"eventType": "Test"})


@pytest.mark.parametrize("original, audio, expected", [
    (arr.JAPANESE, ["jpn", "eng"], "ja"),      # the original among the tracks
    (arr.JAPANESE, ["eng"], "en"),             # a dub only: its one language
    (arr.JAPANESE, ["eng", "ger"], None),      # dubs only: nothing to go by, the chain listens
    (arr.JAPANESE, ["und"], "ja"),             # tracks untagged: the original language
    ({"id": 0, "name": "Unknown"}, [], None),
    ({"id": 18, "name": "Portuguese (Brazil)"}, [], "pt"),
    (arr.ENGLISH, "English / Japanese", "en"),  # older releases: one string of names
    (None, "Japanese", "ja")])
def test_the_hint_is_the_original_language_the_file_has(original, audio, expected):
    doc = arr.sonarr_download(f"{TV}/e.mkv", TV, original=original)
    doc["episodeFile"]["mediaInfo"]["audioLanguages"] = audio
    hint = parse("sonarr", doc).files[0].hint
    assert (hint.language if hint else None) == expected


def test_audio_languages_without_media_info():
    assert payload.audio_languages({"path": "/x"}) == []
    assert payload.audio_languages({"mediaInfo": {"audioLanguages": ["eng", "en", "jpn"]}}) == [
        "en", "ja"]
