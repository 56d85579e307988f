"""The skip policy: each rule against real files on disk, and the registry a new rule joins."""

import subprocess
import types
from pathlib import Path

import pytest

from scribewatch.pipeline import skip_policy
from scribewatch.pipeline.config import DEFAULT_IGNORE, MEDIA_EXTENSIONS
from scribewatch.pipeline.errors import SkipJob
from scribewatch.pipeline.media.reader import ProbeResult, probe
from scribewatch.pipeline.skip_policy import BEFORE_READING, DECIDED, PROBED, TRANSCRIBED, Facts
from scribewatch.pipeline.transcript import Segment, Transcript

ON = types.SimpleNamespace(skip_existing_subtitles=True, skip_embedded_subtitles=True,
                           skip_same_stem=True, include_extensions=MEDIA_EXTENSIONS,
                           ignore_globs=DEFAULT_IGNORE)
OFF = types.SimpleNamespace(skip_existing_subtitles=False, skip_embedded_subtitles=False,
                            skip_same_stem=False, include_extensions=MEDIA_EXTENSIONS,
                            ignore_globs=DEFAULT_IGNORE)


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
    # Language unknown before reading: checked once it is decided (tag or vote).
    unknown = Facts(film, film.parent, None, None)
    assert reason(BEFORE_READING, ON, unknown) is None
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, language="en")) \
        == "subtitle_exists"
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, language="es")) is None


@pytest.mark.parametrize("name", ["Film.de.srt", "Film.ger.srt", "Film.deu.ass",
                                  "Film.German.srt", "Film.de.sdh.srt", "film.GER.vtt"])
def test_a_sidecar_in_any_spelling_of_the_language_counts(film, name):
    (film.parent / name).write_text("1\n")
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, language="de")) \
        == "subtitle_exists"
    # It is a German subtitle: an English or French job still runs.
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, language="en")) is None
    assert reason(BEFORE_READING, ON, Facts(film, film.parent, "fr", None)) is None


@pytest.mark.parametrize("name", ["Film.de.forced.srt", "Film.ger.forced.srt",
                                  "Film.deu.forced.sdh.ass"])
def test_a_forced_only_sidecar_does_not_count(film, name):
    (film.parent / name).write_text("1\n")
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, language="de")) is None
    assert reason(BEFORE_READING, ON, Facts(film, film.parent, "de", None)) is None


def test_the_output_folder_is_searched_too(tmp_path, film):
    out = tmp_path / "out"
    out.mkdir()
    (out / "Film.en.vtt").write_text("WEBVTT\n")
    assert reason(BEFORE_READING, ON, Facts(film, film.parent, "en", out)) == "subtitle_exists"


def test_an_embedded_stream_in_the_decided_language_skips(film):
    info = ProbeResult(duration=11.0, audio_codec="flac", audio_streams=1, channels=1,
                       sample_rate=16000, subtitle_languages=("de", "en"), container="matroska")
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, probe=info,
                                     language="en")) == "embedded_subtitle"
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, probe=info,
                                     language="fr")) is None
    assert reason(DECIDED, ON, Facts(film, film.parent, None, None, probe=info)) is None
    assert reason(DECIDED, OFF, Facts(film, film.parent, None, None, probe=info,
                                      language="en")) is None


def test_embedded_streams_are_read_by_language_and_a_forced_one_does_not_count(tmp_path,
                                                                                media):
    """A real MKV (ffmpeg): a full subtitle stream tagged `ger`, a forced-only one tagged
    `eng`: a German job is skipped, an English one is not."""
    from tests.harness import require_binary

    require_binary("ffmpeg")
    srt = tmp_path / "cues.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nHallo\n")
    mkv = tmp_path / "Film.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media / "jfk.flac"), "-i", str(srt),
                    "-i", str(srt), "-map", "0:a", "-map", "1", "-map", "2", "-c:a", "copy",
                    "-c:s", "srt", "-metadata:s:s:0", "language=ger",
                    "-metadata:s:s:1", "language=eng", "-disposition:s:1", "forced",
                    str(mkv)], check=True)
    info = probe(mkv)
    assert [(t.language, t.forced) for t in info.subtitle_tracks] == [("de", False),
                                                                       ("en", True)]
    assert info.subtitle_languages == ("de",)
    assert reason(DECIDED, ON, Facts(mkv, tmp_path, None, None, probe=info,
                                     language="de")) == "embedded_subtitle"
    assert reason(DECIDED, ON, Facts(mkv, tmp_path, None, None, probe=info,
                                     language="en")) is None


# -- same stem --------------------------------------------------------------------------------
# Jellyfin, Plex and Emby match an external subtitle to a video by the video's name without its
# extension: `Movie.en.srt` is shown with `Movie.mkv` and with `Movie.mp4` (Jellyfin:
# https://jellyfin.org/docs/general/server/media/external-files/ ; Plex:
# https://support.plex.tv/articles/200471133-adding-local-subtitles-to-your-media/). Both would
# write that one file: one is transcribed.
def stem_reason(path: Path, settings=ON, set_aside=lambda sibling: False):
    return reason(BEFORE_READING, settings,
                  Facts(path, path.parent, "en", None, set_aside=set_aside))


@pytest.mark.parametrize("names, chosen", [
    (["Movie.mp4", "Movie.mkv"], "Movie.mkv"),             # by name, whatever came first
    (["Movie.avi", "Movie.mp4"], "Movie.mp4"),
    (["Movie.MKV", "Movie.mp4", "Movie.mp3"], "Movie.MKV"),  # stems compared without case
    (["Talk.wav", "Talk.flac"], "Talk.flac"),              # audio only: by name
])
def test_of_media_files_sharing_a_stem_one_is_chosen_by_name(tmp_path, names, chosen):
    for name in names:
        (tmp_path / name).write_bytes(b"x" * (100 if name == chosen else 5000))   # size: no say
    assert {n: stem_reason(tmp_path / n) for n in names} == {
        n: None if n == chosen else "same_stem" for n in names}
    skip = pytest.raises(SkipJob, skip_policy.check, BEFORE_READING, ON,
                         Facts(tmp_path / names[names.index(chosen) - 1], tmp_path, "en", None))
    assert chosen in skip.value.message


def test_other_files_and_other_stems_are_no_siblings(tmp_path):
    for name in ("Movie.mkv", "Movie.nfo", "Movie.jpg", "Movie.en.srt.bak", "Movie 2.mp4",
                 "Movie.2019.mp4", "Movie.mkv.part"):
        (tmp_path / name).write_bytes(b"x")
    assert stem_reason(tmp_path / "Movie.mkv", OFF) is None
    assert stem_reason(tmp_path / "Movie 2.mp4") is None
    assert stem_reason(tmp_path / "Movie.2019.mp4") is None
    (tmp_path / "Movie.webm").write_bytes(b"x")
    assert stem_reason(tmp_path / "Movie.webm") == "same_stem"
    assert stem_reason(tmp_path / "Movie.mkv") is None
    # A file the watcher ignores never gets a job: it claims nothing.
    ignoring = types.SimpleNamespace(**{**vars(ON), "ignore_globs": ("*.mkv",)})
    assert stem_reason(tmp_path / "Movie.webm", ignoring) is None


def test_a_chosen_file_set_aside_hands_the_stem_on(tmp_path):
    for name in ("Movie.mkv", "Movie.mp4", "Movie.avi"):
        (tmp_path / name).write_bytes(b"x")
    failed = {tmp_path / "Movie.mkv"}
    assert stem_reason(tmp_path / "Movie.mp4", set_aside=failed.__contains__) is None
    assert stem_reason(tmp_path / "Movie.avi", set_aside=failed.__contains__) == "same_stem"
    assert stem_reason(tmp_path / "Movie.mp4", OFF) is None            # skip_same_stem: false


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


def test_every_skip_is_made_by_the_skip_policy():
    """No module but skip_policy.py makes a `SkipJob`: the decoder, the language decision and
    the API raise what the policy makes for them, so its reason codes and messages are here."""
    import ast
    import importlib.util
    import pkgutil

    import scribewatch.pipeline as pipeline

    makers = set()
    for info in pkgutil.walk_packages(pipeline.__path__, "scribewatch.pipeline."):
        origin = importlib.util.find_spec(info.name).origin
        tree = ast.parse(Path(origin).read_text())
        if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "SkipJob"
               for n in ast.walk(tree)):
            makers.add(info.name)
    assert makers == {"scribewatch.pipeline.skip_policy"}
    assert skip_policy.empty_audio("/m/a.mkv").reason == "no_speech"
    assert skip_policy.language_uncertain("/m/a.mkv", "de 0.50", 0.5, 0.6).message.endswith(
        "(de 0.50; 0.50 < 0.6)")
