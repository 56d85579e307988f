"""Intake: what a finished file becomes — queued, skipped with a reason, or nothing — against a
real job store and real files."""

import os
import types
from pathlib import Path

import pytest

from scribewatch.pipeline import intake as intake_mod
from scribewatch.pipeline.config import DEFAULT_IGNORE, MEDIA_EXTENSIONS
from scribewatch.pipeline.intake import Intake
from scribewatch.pipeline.store.sqlite import SqliteStore


@pytest.fixture
def setup(tmp_path, monkeypatch):
    root = tmp_path / "media"
    root.mkdir()
    store = SqliteStore(tmp_path / "jobs.db")
    hashed = []
    real_hash = intake_mod.content_hash

    def spy(path, size):
        hashed.append(os.path.basename(path))
        return real_hash(path, size)

    monkeypatch.setattr(intake_mod, "content_hash", spy)
    queued = []
    settings = types.SimpleNamespace(   # the Config's skip settings
        skip_existing_subtitles=True, skip_same_stem=True, include_extensions=MEDIA_EXTENSIONS,
        ignore_globs=DEFAULT_IGNORE)
    intake = Intake(store, settings=settings, target_language=lambda path: "en", output_dir=None,
                    on_queued=lambda: queued.append(1))
    yield intake, store, root, hashed, queued
    store.close()


def jobs(store):
    return [(Path(j.path).name, j.status, j.reason) for j in reversed(store.history(None))]


def test_a_new_file_with_its_subtitle_is_skipped_without_reading_it(setup):
    intake, store, root, hashed, queued = setup
    (root / "Movie.mkv").write_bytes(b"m" * 1000)
    (root / "Movie.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    intake.take(str(root / "Movie.mkv"), str(root))
    assert jobs(store) == [("Movie.mkv", "skipped", "subtitle_exists")]
    assert hashed == [] and queued == []


def test_a_new_file_without_one_is_fingerprinted_and_queued_once(setup):
    intake, store, root, hashed, queued = setup
    (root / "Show.mkv").write_bytes(b"s" * 1000)
    intake.take(str(root / "Show.mkv"), str(root))
    os.utime(root / "Show.mkv")                          # touched while it waits
    intake.take(str(root / "Show.mkv"), str(root))
    assert jobs(store) == [("Show.mkv", "queued", None)]
    assert hashed == ["Show.mkv", "Show.mkv"] and queued == [1]
    assert store.latest_for_path(str(root / "Show.mkv")).fingerprint


def test_a_skipped_file_whose_subtitle_went_away_is_queued(setup):
    intake, store, root, hashed, queued = setup
    (root / "Movie.mkv").write_bytes(b"m" * 1000)
    (root / "Movie.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    intake.take(str(root / "Movie.mkv"), str(root))
    (root / "Movie.en.srt").unlink()
    os.utime(root, (1, 1))                                # the folder listing is settled
    os.utime(root / "Movie.mkv")                          # touched: the watcher hands it on
    intake.take(str(root / "Movie.mkv"), str(root))
    assert jobs(store) == [("Movie.mkv", "skipped", "subtitle_exists"),
                                 ("Movie.mkv", "queued", None)]


def test_our_own_subtitle_does_not_skip_a_replaced_file(setup):
    intake, store, root, hashed, queued = setup
    media, srt = root / "Talk.mp3", root / "Talk.en.srt"
    media.write_bytes(b"a" * 1000)
    intake.take(str(media), str(root))
    job = store.claim_next("0")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nours\n")
    store.finish(job.id, "succeeded", outputs=[str(srt)])
    media.write_bytes(b"b" * 2000)                        # a new version of the file
    os.utime(root, (1, 1))
    intake.take(str(media), str(root))
    assert jobs(store)[-1] == ("Talk.mp3", "queued", None)


def test_same_stem_one_is_queued_the_other_skipped_without_reading_it(setup):
    intake, store, root, hashed, queued = setup
    for name in ("Movie.mp4", "Movie.mkv"):
        (root / name).write_bytes(b"m" * 1000)
    intake.take(str(root / "Movie.mp4"), str(root))   # the first to arrive is not the one
    intake.take(str(root / "Movie.mkv"), str(root))
    assert jobs(store) == [("Movie.mp4", "skipped", "same_stem"), ("Movie.mkv", "queued", None)]
    assert hashed == ["Movie.mkv"] and queued == [1]
    mp4 = root / "Movie.mp4"
    assert intake.is_known(str(mp4), mp4.stat())   # while Movie.mkv stands: nothing recorded
    assert len(jobs(store)) == 2


@pytest.mark.parametrize("ending", ["failed", "skipped", "deleted", "succeeded"])
def test_the_skipped_sibling_is_taken_again_when_the_chosen_one_ends_without_a_subtitle(
        setup, ending):
    """A later scan asks `is_known` again: the skipped sibling is queued once the chosen file
    failed, was skipped for a reason of its own, or is gone; not after it succeeded."""
    intake, store, root, hashed, queued = setup
    mkv, mp4 = root / "Movie.mkv", root / "Movie.mp4"
    for path in (mkv, mp4):
        path.write_bytes(b"m" * 1000)
        intake.take(str(path), str(root))
    job = store.claim_next("0")
    assert Path(job.path) == mkv
    if ending == "deleted":
        mkv.unlink()                                      # its job not even finished yet
    elif ending == "succeeded":
        store.finish(job.id, "succeeded", outputs=[str(root / "Movie.en.srt")])
        (root / "Movie.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    else:
        store.finish(job.id, ending, reason="decode_error" if ending == "failed" else "no_speech",
                     stage="decode" if ending == "failed" else None)
    os.utime(root, (1, 1))                                # the folder listing is settled
    if ending == "succeeded":
        assert intake.is_known(str(mp4), mp4.stat())
        return
    assert not intake.is_known(str(mp4), mp4.stat())
    intake.take(str(mp4), str(root))
    assert jobs(store)[-1] == ("Movie.mp4", "queued", None)
