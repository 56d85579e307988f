"""Intake: what a finished file becomes — queued, skipped with a reason, or nothing — against a
real job store and real files."""

import os
import types
from pathlib import Path

import pytest

from scribewatch.pipeline import intake as intake_mod
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
    settings = types.SimpleNamespace(skip_existing_subtitles=True)   # the Config's skip setting
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
