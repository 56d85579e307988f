"""The watcher hands on a file only when it has finished arriving, and watches mount health."""

import os
import shutil
import time

import pytest

from scribewatch.pipeline.config import DEFAULT_IGNORE, MEDIA_EXTENSIONS
from scribewatch.pipeline.watcher import FileFilter, Watcher
from tests.harness import wait_for


class Recorder:
    def __init__(self):
        self.ready: list[tuple[str, float, int]] = []   # path, when, size then

    def __call__(self, path, root):
        self.ready.append((path, time.time(), os.path.getsize(path)))


@pytest.fixture
def watcher_for(tmp_path):
    made = []

    def make(window=0.5, **kw):
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        rec = Recorder()
        w = Watcher([inbox], file_filter=FileFilter(MEDIA_EXTENSIONS, DEFAULT_IGNORE),
                    stability_seconds=window, on_ready=rec, is_known=lambda p, st: False, **kw)
        w.start()
        made.append(w)
        wait_for(w.scan_done.is_set, 5, what="startup scan")
        return w, inbox, rec

    yield make
    for w in made:
        w.stop()


def test_slow_copy_is_handed_on_once_after_the_copy_ends(watcher_for, media):
    """Chunks with pauses longer than the window: only close-write ends the copy."""
    w, inbox, rec = watcher_for(window=0.3)
    data = (media / "jfk.flac").read_bytes()
    target = inbox / "slow.flac"
    with open(target, "wb") as f:
        for i in range(0, len(data), len(data) // 6 + 1):
            f.write(data[i:i + len(data) // 6 + 1])
            f.flush()
            time.sleep(0.6)       # longer than the stability window
            assert rec.ready == [], "picked up while still being written"
        copy_end = time.time()
    wait_for(lambda: rec.ready, 5, what="file handed on")
    time.sleep(1)
    assert len(rec.ready) == 1
    path, when, size = rec.ready[0]
    assert path == str(target) and when >= copy_end and size == len(data)


def test_ignored_names_and_extensions(watcher_for, media):
    w, inbox, rec = watcher_for(window=0.2)
    for name in (".hidden.mp3", "movie.mkv.part", "x.tmp", "dl.mp4.crdownload", "t.!qB", "a.mp3~",
                 "notes.txt", "movie.en.srt"):
        (inbox / name).write_bytes(b"x" * 100)
    (inbox / ".sync").mkdir()
    (inbox / ".sync" / "inside.mp3").write_bytes(b"x" * 100)
    shutil.copy(media / "jfk.flac", inbox / "good.FLAC")
    wait_for(lambda: rec.ready, 5, what="the good file")
    time.sleep(1)
    assert [os.path.basename(p) for p, _, _ in rec.ready] == ["good.FLAC"]


def test_rename_into_place_and_subfolders(watcher_for, media, tmp_path):
    w, inbox, rec = watcher_for(window=0.2)
    (inbox / "show" / "s01").mkdir(parents=True)
    part = inbox / "show" / "s01" / "e01.mp3.part"
    shutil.copy(media / "hotwords.mp3", part)
    time.sleep(0.5)
    assert rec.ready == []
    part.rename(inbox / "show" / "s01" / "e01.mp3")     # how torrent clients finish
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(media / "jfk.flac", outside / "moved.flac")
    (outside / "moved.flac").rename(inbox / "moved.flac")   # moved in from an unwatched folder
    wait_for(lambda: len(rec.ready) == 2, 5, what="both files")
    assert sorted(os.path.basename(p) for p, _, _ in rec.ready) == ["e01.mp3", "moved.flac"]


def test_startup_scan_finds_existing_files(tmp_path, media):
    inbox = tmp_path / "inbox"
    (inbox / "deep" / "er").mkdir(parents=True)
    shutil.copy(media / "jfk.flac", inbox / "deep" / "er" / "old.flac")
    past = time.time() - 3600
    os.utime(inbox / "deep" / "er" / "old.flac", (past, past))
    rec = Recorder()
    w = Watcher([inbox], file_filter=FileFilter(MEDIA_EXTENSIONS, DEFAULT_IGNORE),
                stability_seconds=2, on_ready=rec, is_known=lambda p, st: False)
    w.start()
    try:
        wait_for(lambda: rec.ready, 3, what="scanned file")
        assert rec.ready[0][0].endswith("old.flac")
        assert w.scan_done.is_set() and w.scan_files == 1 and w.scan_seconds >= 0
    finally:
        w.stop()


def test_missing_watch_folder_is_an_outage_and_recovers(watcher_for, media, tmp_path):
    w, inbox, rec = watcher_for(window=0.2)
    assert w.alive() and w.unavailable_count == 0
    gone = tmp_path / "unmounted"
    inbox.rename(gone)
    wait_for(lambda: not w.alive(), 5, what="watcher reporting the outage")
    assert w.unavailable_count == 1 and w.available_roots == []
    gone.rename(inbox)
    wait_for(w.alive, 5, what="watcher recovering")
    shutil.copy(media / "jfk.flac", inbox / "after.flac")   # watched again after the outage
    wait_for(lambda: rec.ready, 5, what="file after recovery")


def test_reading_watched_files_delivers_no_events(watcher_for, media):
    """Opens and closes without a write (Plex streaming, our own fingerprinting during a scan)
    are filtered out by inotify itself, not turned into Python events to discard."""
    w, inbox, rec = watcher_for(window=0.2)
    target = inbox / "movie.flac"
    shutil.copy(media / "jfk.flac", target)
    wait_for(lambda: rec.ready, 5, what="the new file")
    kinds = []
    real_note = w.note
    w.note = lambda path, root, kind, filtered=False: (kinds.append(kind),
                                                       real_note(path, root, kind, filtered))
    for _ in range(20):
        with open(target, "rb") as f:
            f.read(4096)
    (inbox / "other.flac").write_bytes(b"x" * 10)    # a write still arrives
    wait_for(lambda: "closed" in kinds, 5, what="the close-write event")
    time.sleep(0.3)
    assert not {"opened", "closed_no_write"} & set(kinds), kinds
    wait_for(lambda: len(rec.ready) == 2, 5, what="the written file")
    assert [os.path.basename(p) for p, _, _ in rec.ready] == ["movie.flac", "other.flac"]


def test_scan_hands_over_a_large_folder_in_store_batches(tmp_path):
    """Each SCAN_BATCH_FILES files of a folder go through one `scan_batch`; every file is
    handed on exactly once."""
    from scribewatch.pipeline import watcher as watcher_mod

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    count = watcher_mod.SCAN_BATCH_FILES * 2 + 7
    past = time.time() - 3600
    for i in range(count):
        p = inbox / f"f{i:04d}.mp3"
        p.write_bytes(b"x")
        os.utime(p, (past, past))
    rec, batches, inside = Recorder(), [], []

    class Batch:
        def __enter__(self):
            batches.append(0)
            inside.append(True)

        def __exit__(self, *exc):
            inside.pop()

    def on_ready(path, root):
        assert inside, "handed on outside a batch"
        batches[-1] += 1
        rec(path, root)

    w = Watcher([inbox], file_filter=FileFilter(MEDIA_EXTENSIONS, DEFAULT_IGNORE),
                stability_seconds=0.2, on_ready=on_ready, is_known=lambda p, st: False,
                scan_batch=Batch)
    w._available = {r: True for r in w.roots}
    assert w.scan(w.roots[0], w.roots[0]) == count
    assert sorted(os.path.basename(p) for p, _, _ in rec.ready) == sorted(
        f"f{i:04d}.mp3" for i in range(count))
    assert batches == [watcher_mod.SCAN_BATCH_FILES] * 2 + [7]
