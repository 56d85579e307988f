"""Real speech in the containers language handling meets: cut, tagged, several audio tracks.

multilingual.mp3 is a licence read in English (0-30.5 s) and then in German (30.5-59.9 s).
Everything is made with ffmpeg from it and jfk.flac, once per test session (and by
bench/language.py), never downloaded.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness.media import ffmpeg

GERMAN_FROM = 30.5

# English content words Whisper base's translation of the German half contains (checked on
# this machine: "…the right to use the software, to modify, … to distribute, to license and or
# copy the software, to sell and transfer these rights").
TRANSLATION_WORDS = ("software", "right", "distribute", "sell")
# German words of the same half's transcript.
GERMAN_WORDS = ("Software", "Recht", "verwenden")


def halves(media: Path, out: Path) -> tuple[Path, Path]:
    """(english.flac, german.flac): the two readings of multilingual.mp3, untagged."""
    english, german = out / "english.flac", out / "german.flac"
    if not german.exists():
        ffmpeg("-i", str(media / "multilingual.mp3"), "-t", str(GERMAN_FROM), str(english))
        ffmpeg("-i", str(media / "multilingual.mp3"), "-ss", str(GERMAN_FROM), str(german))
    return english, german


def tagged(source: Path, target: Path, language: str | None) -> Path:
    """`source`'s audio re-encoded (AAC) into `target`'s container, its stream tagged
    `language` (None: no tag at all)."""
    tag = ["-metadata:s:a:0", f"language={language}"] if language else []
    ffmpeg("-i", str(source), "-map", "0:a", "-c:a", "aac", "-b:a", "64k",
           "-map_metadata", "-1", *tag, str(target))
    return target


def multi_track(target: Path, tracks: list[tuple[Path, str, str, str]]) -> Path:
    """An MKV with one audio track per (source, language tag, title, dispositions), in order.
    Dispositions as ffmpeg writes them: `default`, `comment`, `0` (none)."""
    args: list[str] = []
    for source, *_ in tracks:
        args += ["-i", str(source)]
    for i in range(len(tracks)):
        args += ["-map", f"{i}:a"]
    args += ["-c:a", "aac", "-b:a", "64k", "-map_metadata", "-1"]
    for i, (_, language, title, disposition) in enumerate(tracks):
        args += [f"-metadata:s:a:{i}", f"language={language}",
                 f"-disposition:a:{i}", disposition or "0"]
        if title:
            args += [f"-metadata:s:a:{i}", f"title={title}"]
    ffmpeg(*args, str(target))
    return target


def build(media: Path, out: Path) -> dict[str, Path]:
    """Every file the language tests use, by name."""
    out.mkdir(parents=True, exist_ok=True)
    english, german = halves(media, out)
    jfk = media / "jfk.flac"
    files = {
        "english": english, "german": german, "jfk": jfk,
        "whole": media / "multilingual.mp3",
        "german_ger": tagged(german, out / "german_ger.mkv", "ger"),
        "german_deu": tagged(german, out / "german_deu.mp4", "deu"),
        "german_und": tagged(german, out / "german_und.mkv", "und"),
        "german_untagged": tagged(german, out / "german_untagged.m4a", None),
        "english_eng": tagged(english, out / "english_eng.mkv", "eng"),
        # Mislabelled: English speech tagged German. The tag is believed (as Bazarr does).
        "jfk_ger": tagged(jfk, out / "jfk_ger.mkv", "ger"),
    }
    commentary = (jfk, "eng", "Director's Commentary", "comment")
    files["two_tracks_de_default"] = multi_track(out / "two_tracks_de_default.mkv", [
        (german, "ger", "", "default"), (english, "eng", "", "0"), commentary])
    files["two_tracks_en_default"] = multi_track(out / "two_tracks_en_default.mkv", [
        (german, "ger", "", "0"), (english, "eng", "", "default"), commentary])
    # The commentary first and flagged default: still never chosen by default.
    files["commentary_first"] = multi_track(out / "commentary_first.mkv", [
        (jfk, "eng", "Commentary with the director", "default"), (german, "ger", "", "0")])
    return files
