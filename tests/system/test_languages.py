"""Every language in the library, end to end: the real daemon with the real multilingual `base`
model on real speech in ffmpeg-made containers (tests/harness/language_media.py) — the language
chain, the audio track, per-language skips, the English translation, the job store, `history`
and the metrics."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.harness import language_media as lm
from tests.harness.quality import check_readability, parse_srt

pytestmark = pytest.mark.slow


def words_of(path: Path) -> str:
    cues = parse_srt(path.read_text())
    assert cues, f"{path} has no cues"
    assert check_readability(cues) == [], (path.name, check_readability(cues))
    assert path.read_text().endswith("\n")
    return " ".join(c.text for c in cues)


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_base_model_decides_each_files_language(daemon_factory, language_media,
                                                    base_model_dir):
    d = daemon_factory({"model": "base", "models_dir": str(Path(base_model_dir).parent),
                        "translate_to_english": True})
    inbox = d.watch
    # The film: German (default track), English dub, a commentary. Tag → de; translated too.
    shutil.copy(language_media["two_tracks_de_default"], inbox / "Film.mkv")
    # The series: English is the default track. Tag → en; no translation of English.
    shutil.copy(language_media["two_tracks_en_default"], inbox / "Serie.mkv")
    # English then German: the vote is split, the default action skips it.
    shutil.copy(language_media["whole"], inbox / "mixed.mp3")
    # Untagged German with a German subtitle (639-2 spelling) beside it: the vote says de,
    # and then the subtitle in THAT language is there.
    shutil.copy(language_media["german_untagged"], inbox / "Doku.m4a")
    (inbox / "Doku.ger.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHallo\n")
    # A forced-only German subtitle and a full English one: German is still written, and the
    # English translation is not needed.
    shutil.copy(language_media["german_und"], inbox / "Reportage.mkv")
    (inbox / "Reportage.de.forced.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nSchild\n")
    (inbox / "Reportage.eng.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    d.start()
    jobs = {Path(j["path"]).stem: j for j in d.wait_jobs(5, timeout=600)}
    got = {stem: (j["status"], j["reason"], j["language"], j["language_source"])
           for stem, j in jobs.items()}
    assert got == {
        "Film": ("succeeded", None, "de", "tag"),
        "Serie": ("succeeded", None, "en", "tag"),
        "mixed": ("skipped", "language_uncertain", got["mixed"][2], "vote"),
        "Doku": ("skipped", "subtitle_exists", "de", "vote"),
        "Reportage": ("succeeded", None, "de", "vote"),
    }
    assert got["mixed"][2] in ("de", "en")
    assert 0.35 < jobs["mixed"]["language_probability"] < 0.65
    assert jobs["Film"]["language_probability"] == 1.0
    assert jobs["Reportage"]["language_probability"] > 0.95

    # The chosen track only, named by its language; the translation beside it.
    german = words_of(inbox / "Film.de.srt")
    assert all(w in german for w in lm.GERMAN_WORDS), german
    english = words_of(inbox / "Film.en.srt").lower()
    assert all(w in english for w in lm.TRANSLATION_WORDS), english
    assert "country" not in english          # not the commentary (jfk.flac)
    serie = words_of(inbox / "Serie.en.srt")
    assert "Software" not in serie and "software" in serie.lower()
    assert not (inbox / "Serie.de.srt").exists()
    assert all(w in words_of(inbox / "Reportage.de.srt") for w in lm.GERMAN_WORDS)
    assert (inbox / "Reportage.eng.srt").read_text().endswith("hello\n")   # left alone
    assert not (inbox / "Reportage.en.srt").exists()
    assert not list(inbox.glob("mixed.*.srt")) and not (inbox / "Doku.de.srt").exists()
    assert sorted(Path(o).name for o in jobs["Film"]["outputs"].strip("[]").replace(
        '"', "").split(", ")) == ["Film.de.srt", "Film.en.srt"]

    # history shows the decision.
    table = d.cli("history", "--db", str(d.db)).stdout
    film_row = next(line for line in table.splitlines() if line.endswith("Film.mkv"))
    assert re.search(r"\bde\s+tag\s+1\.00\b", film_row), film_row
    mixed_row = next(line for line in table.splitlines() if line.endswith("mixed.mp3"))
    assert "language_uncertain" in mixed_row and re.search(r"\bvote\s+0\.[3-6]", mixed_row)
    assert {h["language_source"] for h in d.history()} == {"tag", "vote"}

    text = d.metrics()
    assert metric(text, "scribewatch_language_decisions_total", language="de", source="tag") == 1
    # Doku, Reportage, and the mixed file when German won its split vote.
    assert metric(text, "scribewatch_language_decisions_total", language="de",
                  source="vote") == 2 + (got["mixed"][2] == "de")
    assert metric(text, "scribewatch_language_decision_confidence_ratio_count") == 5
    assert metric(text, "scribewatch_language_decision_confidence_ratio_bucket", le="0.6") == 1
    assert metric(text, "scribewatch_subtitles_written_total", kind="transcription") == 3
    assert metric(text, "scribewatch_subtitles_written_total", kind="translation") == 1
    assert metric(text, "scribewatch_files_skipped_total", reason="language_uncertain") == 1


def test_an_uncertain_file_can_fall_back_to_the_default_language(daemon_factory, media,
                                                                  base_model_dir):
    d = daemon_factory({"model": "base", "models_dir": str(Path(base_model_dir).parent),
                        "language_uncertain_action": "default", "default_language": "eng"})
    shutil.copy(media / "multilingual.mp3", d.watch / "mixed.mp3")
    d.start()
    (job,) = d.wait_jobs(1, timeout=300)
    assert (job["status"], job["language"], job["language_source"]) == (
        "succeeded", "en", "default")
    assert words_of(d.watch / "mixed.en.srt")


def test_the_english_only_model_never_mislabels(daemon_factory, language_media):
    """tiny.en: English speech untagged or tagged `eng` is transcribed; a file tagged German
    (here English speech mislabelled `ger`: the tag is believed) is skipped, not given an
    English-looking `.en.srt`; a folder forced to Japanese too."""
    d = daemon_factory()
    forced = d.watch / "anime"
    forced.mkdir()
    d.config["folder_languages"] = {str(forced): "ja"}
    d.config_path.write_text(__import__("yaml").safe_dump(d.config))
    shutil.copy(language_media["jfk"], d.watch / "speech.flac")
    shutil.copy(language_media["english_eng"], d.watch / "english.mkv")
    shutil.copy(language_media["jfk_ger"], d.watch / "tagged_german.mkv")
    shutil.copy(language_media["jfk"], forced / "episode.flac")
    d.start()
    jobs = {Path(j["path"]).stem: j for j in d.wait_jobs(4, timeout=300)}
    got = {stem: (j["status"], j["reason"], j["language"], j["language_source"])
           for stem, j in jobs.items()}
    assert got == {
        "speech": ("succeeded", None, "en", "model"),
        "english": ("succeeded", None, "en", "tag"),
        "tagged_german": ("skipped", "language_mismatch", "de", "tag"),
        "episode": ("skipped", "language_mismatch", "ja", "forced"),
    }
    assert not (d.watch / "tagged_german.en.srt").exists()
    assert "country" in words_of(d.watch / "speech.en.srt")
    text = d.metrics()
    assert metric(text, "scribewatch_files_skipped_total", reason="language_mismatch") == 2
    assert metric(text, "scribewatch_language_decisions_total", language="en",
                  source="model") == 1


def transcribe_base(cwd: Path, base_model_dir: str, *args: str):
    """`scribewatch transcribe` with the offline base model, at temperature 0 alone (the
    assertions read its words: no sampled fallback)."""
    import subprocess
    import sys

    from tests.harness import REPO

    return subprocess.run(
        [sys.executable, "-m", "scribewatch", "transcribe", "--model", "base", "--models-dir",
         str(Path(base_model_dir).parent), "--cpu-threads", "2", "--temperature", "0", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_transcribe_takes_the_preferred_audio_track(tmp_path, language_media, base_model_dir):
    """`scribewatch transcribe` with `--preferred-audio-languages`: the English track of a film
    whose default track is German (and never its commentary), named `.en.srt`."""
    shutil.copy(language_media["two_tracks_de_default"], tmp_path / "Film.mkv")
    result = transcribe_base(tmp_path, base_model_dir,
                             "--preferred-audio-languages", "ja,eng", "Film.mkv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "Film.en.srt")]
    english = words_of(tmp_path / "Film.en.srt")
    assert "software" in english.lower() and "Recht" not in english
    assert "country" not in english                      # not the commentary (jfk.flac)
    assert "language en from tag" in result.stderr


def test_english_only_output_for_a_library_read_in_english(tmp_path, language_media,
                                                          base_model_dir):
    """`translate_to_english` with `write_original_language: false`: the German file gets only
    `.en.srt`, Whisper's translation; the English one its transcription."""
    shutil.copy(language_media["german_ger"], tmp_path / "Film.mkv")
    shutil.copy(language_media["jfk"], tmp_path / "speech.flac")
    result = transcribe_base(tmp_path, base_model_dir, "--translate-to-english", "true",
                             "--write-original-language", "false", "Film.mkv", "speech.flac")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "Film.en.srt"),
                                     str(tmp_path / "speech.en.srt")]
    assert not (tmp_path / "Film.de.srt").exists()
    english = words_of(tmp_path / "Film.en.srt").lower()
    assert all(w in english for w in lm.TRANSLATION_WORDS), english
    assert "country" in words_of(tmp_path / "speech.en.srt")
    # Both off would write nothing: refused at start.
    refused = transcribe_base(tmp_path, base_model_dir, "--write-original-language", "false",
                              "speech.flac")
    assert refused.returncode == 2 and "write_original_language" in refused.stderr
