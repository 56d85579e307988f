"""Sidecar detection: names that count as an existing subtitle, and a folder listing that is
reused only while it cannot be stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from scribewatch.pipeline.subtitles import output
from scribewatch.pipeline.subtitles.output import find_sidecar


@pytest.fixture
def listings(monkeypatch):
    """How many times each folder was listed."""
    calls: list[str] = []
    real = os.listdir
    monkeypatch.setattr(output.os, "listdir", lambda p: (calls.append(str(p)), real(p))[1])
    output._INDEX_CACHE.clear()
    return calls


def age(folder: Path, seconds: float) -> int:
    """Set the folder's mtime `seconds` in the past; returns it (ns)."""
    t = time.time_ns() - int(seconds * 1e9)
    os.utime(folder, ns=(t, t))
    return t


@pytest.mark.parametrize("name", ["Movie.en.srt", "Movie.eng.srt", "movie.EN.sdh.srt",
                                  "Movie.en.ass", "Movie.English.vtt"])
def test_what_counts_as_an_english_subtitle(tmp_path, name):
    (tmp_path / name).write_text("x")
    assert find_sidecar(tmp_path / "Movie.mkv", "en", [tmp_path]) == tmp_path / name


# A forced-only subtitle (signs, foreign lines) is not the film's subtitles.
@pytest.mark.parametrize("name", ["Movie.de.srt", "Movie 2.en.srt", "Movie.en.txt",
                                  "movie.EN.forced.srt", "Movie.eng.forced.ass",
                                  f".Movie.en.srt{output.TMP_MARK}1-ab"])
def test_what_does_not(tmp_path, name):
    (tmp_path / name).write_text("x")
    assert find_sidecar(tmp_path / "Movie.mkv", "en", [tmp_path]) is None


def test_a_settled_folder_is_listed_once_until_it_changes(tmp_path, listings):
    for i in range(3):
        (tmp_path / f"e{i}.mkv").write_text("x")
    age(tmp_path, 60)
    for i in range(3):
        assert find_sidecar(tmp_path / f"e{i}.mkv", "en", [tmp_path]) is None
    assert len(listings) == 1
    (tmp_path / "e1.en.srt").write_text("x")          # the folder's mtime moves on
    assert find_sidecar(tmp_path / "e1.mkv", "en", [tmp_path]) == tmp_path / "e1.en.srt"
    assert len(listings) == 2


def test_a_subtitle_added_in_the_same_timestamp_tick_is_not_missed(tmp_path, listings):
    (tmp_path / "Movie.mkv").write_text("x")
    tick = age(tmp_path, 0.5)                          # changed just now
    assert find_sidecar(tmp_path / "Movie.mkv", "en", [tmp_path]) is None
    (tmp_path / "Movie.en.srt").write_text("x")
    os.utime(tmp_path, ns=(tick, tick))                # same tick: the mtime did not move
    assert find_sidecar(tmp_path / "Movie.mkv", "en", [tmp_path]) == tmp_path / "Movie.en.srt"


def test_a_write_refused_before_the_rename_leaves_the_old_subtitle_and_no_temp(tmp_path):
    """A node that lost its lease: the check before the rename raises, nothing changes."""
    from scribewatch.pipeline.subtitles.output import write_atomic

    target = tmp_path / "film.en.srt"
    target.write_text("the other node's subtitle\n")

    class LeaseLost(Exception):
        pass

    def lost():
        raise LeaseLost()

    try:
        write_atomic(target, "a stale result\n", before_replace=lost)
    except LeaseLost:
        pass
    else:
        raise AssertionError("the refusal must reach the caller")
    assert target.read_text() == "the other node's subtitle\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.en.srt"]
    write_atomic(target, "ours\n", before_replace=lambda: None)
    assert target.read_text() == "ours\n"


def test_move_atomic_renames_into_a_new_folder_and_never_over_a_file(tmp_path):
    """A rename from Sonarr or Radarr (pipeline/arr/) moves our subtitle: one rename, into a
    folder made for it, and never over a subtitle that is there already."""
    ours = tmp_path / "a.en.srt"
    ours.write_text("ours\n")
    target = tmp_path / "Season 1" / "b.en.srt"
    assert output.move_atomic(ours, target)
    assert not ours.exists() and target.read_text() == "ours\n"
    other = tmp_path / "c.en.srt"
    other.write_text("theirs\n")
    assert not output.move_atomic(target, other)
    assert other.read_text() == "theirs\n" and target.read_text() == "ours\n"
