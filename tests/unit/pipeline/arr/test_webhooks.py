"""What Sonarr's and Radarr's webhooks do, against a real job store, real intake and real files:
imports ahead of the backlog and never twice, path_map, upgrades and our old subtitles, renames
that move the subtitles and the job's key. Bodies from tests/harness/arr.py (their classes'
field names, cited there)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from scribewatch.pipeline.store.sqlite import SqliteStore
from scribewatch.pipeline.store.sqlite_schema import IMPORT_PRIORITY
from tests.harness import arr

SRT = "1\n00:00:00,000 --> 00:00:01,000\nhi\n"


@pytest.fixture
def setup(tmp_path):
    tv = tmp_path / "tv"
    (tv / "Show").mkdir(parents=True)
    store = SqliteStore(tmp_path / "jobs.db")
    hooks = arr.webhooks_over(store, tv, {str(tv): "/data/tv"})
    yield types.SimpleNamespace(tv=tv, show=tv / "Show", store=store, intake=hooks.intake,
                                hooks=hooks)
    store.close()


def seen(path: Path) -> str:
    """The path as Sonarr sees it."""
    return "/data/tv/" + str(path).split("/tv/", 1)[1]


def done(s, video: Path, *outputs: str) -> int:
    """A file transcribed earlier: its job succeeded with these subtitles beside it."""
    video.write_bytes(video.name.encode() * 100)
    s.intake.take(str(video), str(s.tv))
    job = s.store.claim_next("0")
    paths = [str(video.with_name(f"{video.stem}.{o}")) for o in outputs]
    for p in paths:
        Path(p).write_text(SRT)
    s.store.finish(job.id, "succeeded", token=job.lease_token, outputs=paths)
    return job.id


def test_an_import_is_queued_ahead_of_the_backlog_and_the_watcher_adds_nothing(setup):
    s = setup
    for n in range(3):
        (s.show / f"old{n}.mkv").write_bytes(b"o%d" % n * 100)
        s.intake.take(str(s.show / f"old{n}.mkv"), str(s.tv))
    new = s.show / "S01E01.mkv"
    new.write_bytes(b"n" * 1000)
    answer = s.hooks.handle("sonarr", arr.sonarr_download(seen(new), "/data/tv/Show"))
    assert (answer.status, answer.event, answer.outcome) == (200, "import", "queued")
    assert answer.body["files"][0]["local"] == str(new)
    s.intake.take(str(new), str(s.tv))                     # the watcher, after its window
    again = s.hooks.handle("sonarr", arr.sonarr_download(seen(new), "/data/tv/Show"))
    assert again.outcome == "promoted"
    job = s.store.claim_next("0")
    assert (job.path, job.priority, job.language_hint["language"]) == (
        str(new), IMPORT_PRIORITY, "ja")
    assert s.store.counts()["queued"] == 3                 # the backlog, untouched


def test_a_waiting_folder_job_is_promoted_not_duplicated(setup):
    s = setup
    for name in ("a.mkv", "b.mkv"):
        (s.show / name).write_bytes(name.encode() * 100)
        s.intake.take(str(s.show / name), str(s.tv))
    answer = s.hooks.handle("sonarr", arr.sonarr_download(seen(s.show / "b.mkv"),
                                                          "/data/tv/Show"))
    assert answer.outcome == "promoted" and s.store.counts()["queued"] == 2
    assert Path(s.store.claim_next("0").path).name == "b.mkv"


def test_a_path_outside_every_library_is_refused_with_422(setup, tmp_path):
    s = setup
    answer = s.hooks.handle("radarr", arr.radarr_download("/data/movies/F/f.mkv",
                                                          "/data/movies/F"))
    assert (answer.status, answer.outcome) == (422, "outside_libraries")
    assert "path_map" in answer.body["files"][0]["error"]
    missing = s.hooks.handle("sonarr", arr.sonarr_download("/data/tv/Show/nope.mkv",
                                                           "/data/tv/Show"))
    assert (missing.status, missing.outcome) == (422, "missing")
    assert s.store.counts()["queued"] == 0


def test_an_upgrade_with_another_stem_removes_our_old_subtitle(setup):
    s = setup
    old = s.show / "S01E01 HDTV.mkv"
    done(s, old, "en.srt", "en.vtt")
    foreign = s.show / "S01E01 HDTV.de.srt"                # not ours: left alone
    foreign.write_text(SRT)
    old.unlink()                                           # Sonarr deleted it
    new = s.show / "S01E01 WEBDL.mkv"
    new.write_bytes(b"w" * 1000)
    answer = s.hooks.handle("sonarr", arr.sonarr_download(seen(new), "/data/tv/Show",
                                                          upgrade_of=[seen(old)]))
    assert (answer.event, answer.outcome) == ("upgrade", "queued")
    assert sorted(p.name for p in s.show.iterdir()) == ["S01E01 HDTV.de.srt", "S01E01 WEBDL.mkv"]


@pytest.mark.parametrize("old_name", ["S01E01.mkv", "S01E01.avi"])
def test_an_upgrade_with_the_same_stem_carries_our_subtitle_to_the_new_job(setup, old_name):
    """Same name, or the same stem in another container: our subtitle stays until the new
    job replaces it (its own output), and is no reason to skip the new file."""
    s = setup
    old = s.show / old_name
    done(s, old, "en.srt")
    if old_name.endswith(".avi"):
        old.unlink()
    new = s.show / "S01E01.mkv"
    new.write_bytes(b"upgraded" * 200)
    answer = s.hooks.handle("sonarr", arr.sonarr_download(seen(new), "/data/tv/Show",
                                                          upgrade_of=[seen(old)]))
    assert answer.outcome == "queued", answer.body
    job = s.store.claim_next("0")
    assert job.path == str(new) and job.outputs == [str(s.show / "S01E01.en.srt")]
    assert (s.show / "S01E01.en.srt").exists()


def test_a_rename_moves_every_subtitle_we_wrote_and_the_job_follows(setup):
    s = setup
    old = s.show / "show.s01e01.mkv"
    job_id = done(s, old, "en.srt", "en.vtt", "en.txt")
    new = s.show / "Season 1" / "Show - S01E01 - Pilot.mkv"
    new.parent.mkdir()
    old.rename(new)                                        # Sonarr renamed the video
    answer = s.hooks.handle("sonarr", arr.sonarr_rename("/data/tv/Show",
                                                        [(seen(old), seen(new))]))
    assert (answer.status, answer.event, answer.outcome) == (200, "rename", "renamed")
    assert answer.body["files"][0]["subtitles"] == 3
    assert sorted(p.name for p in new.parent.iterdir()) == [
        "Show - S01E01 - Pilot.en.srt", "Show - S01E01 - Pilot.en.txt",
        "Show - S01E01 - Pilot.en.vtt", "Show - S01E01 - Pilot.mkv"]
    assert [p.name for p in s.show.iterdir()] == ["Season 1"]
    job = s.store.get(job_id)
    assert job.path == str(new) and job.rel_path == "Show/Season 1/Show - S01E01 - Pilot.mkv"
    assert sorted(Path(o).name for o in job.outputs) == sorted(
        p.name for p in new.parent.iterdir() if p.suffix != ".mkv")
    s.intake.take(str(new), str(s.tv))                     # the watcher sees the renamed file
    assert s.store.counts()["queued"] == 0 and len(s.store.history(None)) == 1
    # Sonarr sends it again (a retry): nothing moves twice, nothing breaks.
    assert s.hooks.handle("sonarr", arr.sonarr_rename(
        "/data/tv/Show", [(seen(old), seen(new))])).outcome == "ignored"


def test_a_rename_never_replaces_a_subtitle_that_is_there(setup):
    s = setup
    old, new = s.show / "a.mkv", s.show / "b.mkv"
    done(s, old, "en.srt")
    old.rename(new)
    (s.show / "b.en.srt").write_text("someone else's\n")
    answer = s.hooks.handle("radarr", arr.radarr_rename("/data/tv/Show",
                                                        [(seen(old), seen(new))]))
    assert answer.outcome == "renamed"
    assert (s.show / "b.en.srt").read_text() == "someone else's\n"
    assert (s.show / "a.en.srt").read_text() == SRT


@pytest.mark.parametrize("app, doc", [("sonarr", arr.sonarr_test()),
                                      ("radarr", arr.radarr_test())])
def test_test_is_200_and_garbage_is_400(setup, app, doc):
    answer = setup.hooks.handle(app, doc)
    assert (answer.status, answer.event, answer.outcome) == (200, "test", "ok")
    bad = setup.hooks.handle(app, {"eventType": "Download"})
    assert (bad.status, bad.event, bad.outcome) == (400, "unknown", "bad_request")
