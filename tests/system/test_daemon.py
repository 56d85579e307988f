"""The real daemon, from the outside: files in, subtitles out, the job store telling the truth.

Real faster-whisper, the real tiny.en model, real speech from shared/media. Each test starts
`scribewatch run` as a subprocess (see conftest.Daemon) and only looks at files, the job store,
the CLI and HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import (
    JFK_TEXT,
    SHARED_MEDIA,
    drop_file_permission_override,
    require_binary,
    require_root,
    wait_for,
)
from tests.harness import media as gen
from tests.harness.quality import check_readability, parse_srt, word_error_rate

pytestmark = pytest.mark.slow

SHARED_JFK = SHARED_MEDIA / "jfk.flac"


def long_speech(tmp: Path, target: Path, repeats: int = 6) -> Path:
    """Real speech (jfk.flac repeated) long enough to catch a job mid-transcription.

    Not multilingual.mp3: tiny.en invents a loop in its closing silence, so the guard re-runs it
    and the test would time two transcriptions on a busy CI machine.
    """
    gen.speech_wav(tmp / "staging.wav", [SHARED_JFK] * repeats)
    os.rename(tmp / "staging.wav", target)
    return target


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".scribewatch-tmp-" in p.name]


def assert_good_srt(path: Path, reference: str = JFK_TEXT) -> None:
    cues = parse_srt(path.read_text())
    assert cues, f"{path} has no cues"
    assert check_readability(cues) == [], check_readability(cues)
    text = " ".join(c.text for c in cues)
    wer = word_error_rate(reference, text)
    assert wer < 0.10, f"WER {wer:.2%} for {path}: {text!r}"


def wait_status(daemon, path: Path, status: str, timeout: float = 120) -> dict:
    def find():
        for job in daemon.jobs():
            if job["path"] == str(path) and job["status"] == status:
                return job
        return None
    return wait_for(find, timeout, 0.1, f"{path.name} {status}")


@pytest.mark.smoke
def test_speech_in_audio_and_video_containers_becomes_readable_subtitles(daemon_factory, media):
    d = daemon_factory({"output_formats": ["srt", "vtt", "txt", "json"]}).start()
    for sub, name in (("a", "jfk.flac"), ("b", "jfk.mp4"), ("c", "jfk.mkv")):
        (d.watch / sub).mkdir()
    shutil.copy(media / "jfk.flac", d.watch / "a" / "jfk.flac")
    gen.mux_with_video(media / "jfk.flac", d.tmp / "jfk.mp4")
    gen.mux_with_video(media / "jfk.flac", d.tmp / "jfk.mkv", acodec="flac")
    shutil.move(d.tmp / "jfk.mp4", d.watch / "b" / "jfk.mp4")
    shutil.move(d.tmp / "jfk.mkv", d.watch / "c" / "jfk.mkv")
    jobs = d.wait_jobs(3)
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
    for sub in ("a", "b", "c"):
        folder = d.watch / sub
        assert_good_srt(folder / "jfk.en.srt")
        assert (folder / "jfk.en.vtt").read_text().startswith("WEBVTT")
        assert "country" in (folder / "jfk.en.txt").read_text()
        doc = json.loads((folder / "jfk.en.json").read_text())
        assert doc["language"] == "en" and doc["cues"]
    assert temp_files(d.watch) == []

    # history --json and --stats tell what the store holds
    store = {j["id"]: j for j in d.jobs()}
    history = d.history()
    assert [h["id"] for h in history] == sorted(store, reverse=True)   # newest first
    for h in history:
        row = store[h["id"]]
        assert h["path"] == row["path"] and h["status"] == row["status"] == "succeeded"
        assert h["reason"] is None and h["attempts"] == row["attempts"] == 1
        assert h["language"] == "en" and abs(h["audio_seconds"] - 11.0) < 0.2
        assert sorted(h["outputs"]) == sorted(json.loads(row["outputs"]))
        assert set(h["stage_seconds"]) == {"probe", "decode", "transcribe", "write"}
        assert h["rss_max_bytes"] > 0 and h["model"] == "tiny.en"
    stats = json.loads(d.cli("history", "--db", str(d.db), "--stats", "--json").stdout)
    assert stats["counts"]["succeeded"] == 3 and stats["total_jobs"] == 3
    assert abs(stats["audio_hours"] - 33.0 / 3600) < 0.5 / 3600
    assert stats["processing_seconds"]["count"] == 3 and stats["mean_realtime_factor"] > 0
    text = d.cli("history", "--db", str(d.db)).stdout
    assert text.count("succeeded") == 3
    assert d.stop() == 0


def test_slow_copy_is_transcribed_once_after_it_ends(daemon_factory, media):
    d = daemon_factory().start()
    data = (media / "jfk.flac").read_bytes()
    target = d.watch / "slow.flac"
    step = len(data) // 8 + 1
    with open(target, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(0.7)      # longer than the 0.5 s stability window
            assert d.jobs() == [], "a job was created while the file was still being written"
    copy_end = time.time()
    (job,) = d.wait_jobs(1)
    assert job["status"] == "succeeded" and job["size"] == len(data)
    assert job["detected_at"] >= copy_end - 0.05
    assert_good_srt(d.watch / "slow.en.srt")
    time.sleep(1.5)
    assert len(d.jobs()) == 1


def test_sigkill_mid_transcription_loses_nothing(daemon_factory, media):
    d = daemon_factory({"output_formats": ["srt", "json"]})
    d.start()
    long_speech(d.tmp, d.watch / "licence.wav")
    # Killed once the store has a progress checkpoint (every 30 s of audio transcribed).
    wait_for(lambda: any(j["current_stage"] == "transcribe" and j["checkpoint"] > 0
                         for j in d.jobs()), 60, 0.02, "transcription under way")
    d.kill()
    (job,) = d.jobs()
    assert job["status"] == "running" and job["attempts"] == 1
    assert not (d.watch / "licence.en.srt").exists()

    d.start()
    (job,) = d.wait_jobs(1, timeout=300)
    # The death is on record, and is not a transient-failure attempt.
    assert job["status"] == "succeeded" and (job["attempts"], job["crashes"]) == (1, 1)
    assert job["crash_point"] in ("transcribe@30", "transcribe@60")   # where it was killed
    subtitles = sorted(p.name for p in d.watch.iterdir() if p.suffix in (".srt", ".json"))
    assert subtitles == ["licence.en.json", "licence.en.srt"]
    cues = parse_srt((d.watch / "licence.en.srt").read_text())
    assert cues and check_readability(cues) == []
    assert " ".join(c.text for c in cues).lower().count("country") >= 10
    assert temp_files(d.tmp) == []
    assert "interrupted by a restart" in d.log()


def test_bad_input_fails_with_reasons_and_the_daemon_goes_on(daemon_factory, media, tmp_path):
    require_root("to make a file unreadable, the daemon runs without CAP_DAC_OVERRIDE")
    d = daemon_factory({"max_attempts": 2}, preexec=drop_file_permission_override).start()
    src = tmp_path / "src"
    src.mkdir()
    # Made outside the watch folder, then moved in at once: like a finished download.
    (src / "empty.mp3").write_bytes(b"")
    (src / "notmedia.mp4").write_text("this is a shopping list, not a film\n" * 20)
    gen.mux_with_video(media / "jfk.flac", src / "whole.mp4")
    gen.truncated_copy(src / "whole.mp4", src / "truncated.mp4", 0.6)
    gen.mux_with_video(None, src / "noaudio.mp4", seconds=3)
    gen.silence_wav(src / "silence.wav", 6)
    shutil.copy(media / "jfk.flac", src / "locked.flac")
    os.chmod(src / "locked.flac", 0)
    shutil.copy(media / "jfk.flac", src / "good1.flac")
    gen.mux_with_video(media / "jfk.flac", src / "good2.mkv", acodec="flac")
    # A long file keeps the worker busy while `gone.flac` waits in the queue and is deleted.
    long_speech(d.tmp, d.watch / "busy.wav")
    wait_for(lambda: any(j["status"] == "running" for j in d.jobs()), 60, 0.05, "busy job")
    shutil.copy(media / "jfk.flac", d.watch / "gone.flac")
    wait_status(d, d.watch / "gone.flac", "queued", 20)
    (d.watch / "gone.flac").unlink()
    for p in src.iterdir():
        if p.name != "whole.mp4":
            os.rename(p, d.watch / p.name)

    expected = {
        "empty.mp3": ("failed", "empty_file"), "notmedia.mp4": ("failed", "not_media"),
        "truncated.mp4": ("failed", "corrupt_container"),
        "noaudio.mp4": ("failed", "no_audio_stream"), "silence.wav": ("skipped", "no_speech"),
        "locked.flac": ("failed", "unreadable"), "gone.flac": ("failed", "vanished"),
        "good1.flac": ("succeeded", None), "good2.mkv": ("succeeded", None),
        "busy.wav": ("succeeded", None),
    }
    jobs = d.wait_jobs(len(expected), timeout=400)
    got = {Path(j["path"]).name: (j["status"], j["reason"]) for j in jobs}
    assert got == expected
    for j in jobs:
        if j["status"] == "failed":
            assert j["error_stage"] in ("probe", "decode") and j["error_message"]
            assert Path(j["path"]).name in j["error_message"]
            # one clear line in the log naming the file and the reason
            assert any(Path(j["path"]).name in line and j["reason"] in line
                       for line in d.log().splitlines() if " ERROR " in line)
    locked = next(j for j in jobs if j["path"].endswith("locked.flac"))
    assert locked["attempts"] == 2   # transient: retried, then failed
    assert not (d.watch / "silence.en.srt").exists()
    for good in ("good1", "good2"):
        assert_good_srt(d.watch / f"{good}.en.srt")
    assert d.proc.poll() is None and d.get("/healthz")[0] == 200
    assert d.stop() == 0


def test_unwritable_output_and_full_disk(daemon_factory, media):
    require_root("mounts a small tmpfs to fill it; the daemon runs without CAP_DAC_OVERRIDE")
    d = daemon_factory({"max_attempts": 2, "retry_backoff_seconds": 0.1},
                       preexec=drop_file_permission_override)
    ro, full = d.watch / "readonly", d.watch / "full"
    ro.mkdir()
    full.mkdir()
    shutil.copy(media / "jfk.flac", ro / "a.flac")
    os.chmod(ro, 0o555)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(full)], check=True)
    try:
        shutil.copy(media / "hotwords.mp3", full / "b.mp3")
        with open(full / "filler", "wb") as f:   # leave no room for a subtitle
            try:
                f.write(b"\0" * 1024 * 1024)
            except OSError:
                pass
        d.start()
        jobs = d.wait_jobs(2, timeout=120)
        got = {Path(j["path"]).name: (j["status"], j["reason"], j["error_stage"], j["attempts"])
               for j in jobs}
        assert got == {"a.flac": ("failed", "output_not_writable", "write", 2),
                       "b.mp3": ("failed", "disk_full", "write", 2)}
        assert temp_files(d.watch) == []
        assert "retrying" in d.log()
        # The operator fixes the folder and asks for that job again; the running daemon takes it.
        os.chmod(ro, 0o755)
        out = d.cli("retry", "--db", str(d.db), "--reason", "output_not_writable").stdout
        assert out.startswith("1 failed job(s) queued again")
        job = wait_status(d, ro / "a.flac", "succeeded", 60)
        assert job["attempts"] == 1 and (ro / "a.en.srt").exists()
        assert d.stop() == 0
    finally:
        subprocess.run(["umount", str(full)], check=False)
        os.chmod(ro, 0o755)


def test_unchanged_file_is_not_reprocessed_and_a_replaced_one_is(daemon_factory, media):
    d = daemon_factory().start()
    target = d.watch / "talk.flac"
    shutil.copy(media / "jfk.flac", target)
    d.wait_jobs(1)
    first_srt = (d.watch / "talk.en.srt").read_text()
    assert d.stop() == 0

    os.utime(target)   # touched, same content: still the same file
    d.start()
    time.sleep(3)       # startup scan plus a few ticks
    assert len(d.jobs()) == 1 and "queued" not in d.log().split("scanned")[-1]
    assert d.stop() == 0

    d.start()
    replacement = d.tmp / "replacement.flac"
    gen.write_wav(replacement, gen.load_speech(media / "hotwords.mp3"))
    os.replace(replacement, target)   # new content under the same name
    jobs = d.wait_jobs(2)
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert jobs[0]["fingerprint"] != jobs[1]["fingerprint"]
    assert (d.watch / "talk.en.srt").read_text() != first_srt
    assert sorted(p.name for p in d.watch.iterdir()) == ["talk.en.srt", "talk.flac"]


def test_existing_subtitles_are_respected(daemon_factory, media):
    d = daemon_factory()
    shutil.copy(media / "jfk.flac", d.watch / "Movie.flac")
    (d.watch / "Movie.eng.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    shutil.copy(media / "jfk.flac", d.watch / "Other.flac")
    (d.watch / "Other.fr.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nbonjour\n")
    d.start()
    jobs = d.wait_jobs(2)
    got = {Path(j["path"]).name: (j["status"], j["reason"]) for j in jobs}
    assert got == {"Movie.flac": ("skipped", "subtitle_exists"), "Other.flac": ("succeeded", None)}
    assert not (d.watch / "Movie.en.srt").exists()


def test_embedded_subtitle_stream_is_respected(daemon_factory, media, tmp_path):
    ffmpeg = require_binary("ffmpeg")
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:03,000\nAsk not\n")
    gen.mux_with_video(media / "jfk.flac", tmp_path / "plain.mkv", acodec="flac")
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(tmp_path / "plain.mkv"), "-i", str(srt),
                    "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt",
                    "-metadata:s:s:0", "language=eng", str(tmp_path / "subbed.mkv")], check=True)
    d = daemon_factory().start()
    os.rename(tmp_path / "subbed.mkv", d.watch / "subbed.mkv")
    (job,) = d.wait_jobs(1)
    assert (job["status"], job["reason"]) == ("skipped", "embedded_subtitle")


def test_two_videos_with_one_stem_get_one_subtitle(daemon_factory, media, tmp_path):
    """`Movie.mkv` and `Movie.mp4` would both write `Movie.en.srt`, which Jellyfin, Plex and
    Emby show with either (Jellyfin "searches for external files that exactly match the video
    filename": https://jellyfin.org/docs/general/server/media/external-files). The .mkv is
    transcribed, the .mp4 skipped as `same_stem` (log, store, metric). `Clip.mkv` is still being
    copied when `Clip.mp4` arrives, and turns out not to be media: `Clip.mp4`, skipped while
    it stood, is taken again by the next scan and transcribed."""
    for name in ("Movie.mkv", "Movie.mp4", "Clip.mp4"):
        gen.mux_with_video(media / "jfk.flac", tmp_path / name)
    d = daemon_factory().start()
    arriving = open(d.watch / "Clip.mkv", "wb")          # a copy under way: no job yet
    try:
        arriving.write(b"not a film, it turns out " * 100)
        arriving.flush()
        for name in ("Movie.mp4", "Clip.mp4", "Movie.mkv"):
            os.rename(tmp_path / name, d.watch / name)
        wait_status(d, d.watch / "Clip.mp4", "skipped")
    finally:
        arriving.close()
    wait_status(d, d.watch / "Clip.mp4", "succeeded", timeout=180)
    wait_status(d, d.watch / "Movie.mkv", "succeeded", timeout=180)
    got = [(Path(j["path"]).name, j["status"], j["reason"]) for j in d.jobs()]
    assert sorted(got) == [
        ("Clip.mkv", "failed", "not_media"), ("Clip.mp4", "skipped", "same_stem"),
        ("Clip.mp4", "succeeded", None), ("Movie.mkv", "succeeded", None),
        ("Movie.mp4", "skipped", "same_stem")], got
    assert sorted(p.name for p in d.watch.glob("*.srt")) == ["Clip.en.srt", "Movie.en.srt"]
    assert_good_srt(d.watch / "Movie.en.srt")
    assert_good_srt(d.watch / "Clip.en.srt")
    assert f"skipped {d.watch / 'Movie.mp4'}: Movie.mkv has the same name" in d.log()
    assert 'scribewatch_files_skipped_total{reason="same_stem"} 2.0' in d.metrics()


def test_missing_mount_pauses_jobs_and_resumes(daemon_factory, media):
    d = daemon_factory().start()
    long_speech(d.tmp, d.watch / "long.wav")
    wait_for(lambda: any(j["status"] == "running" for j in d.jobs()), 60, 0.05, "long job running")
    shutil.copy(media / "jfk.flac", d.watch / "short.flac")
    wait_status(d, d.watch / "short.flac", "queued", 20)
    unmounted = d.tmp / "unmounted"
    d.watch.rename(unmounted)          # the NFS/SMB share drops
    status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(d.get("/readyz")), 10,
                            0.1, "/readyz 503")
    assert "watch" in json.loads(body)["reasons"][0]
    time.sleep(8)                      # the long job reaches its write stage meanwhile
    assert not [j for j in d.jobs() if j["status"] == "failed"], d.jobs()
    unmounted.rename(d.watch)          # the share is back
    jobs = d.wait_jobs(2, timeout=300)
    assert sorted((Path(j["path"]).name, j["status"]) for j in jobs) == [
        ("long.wav", "succeeded"), ("short.flac", "succeeded")]
    assert len(d.jobs()) == 2          # nothing queued twice
    assert all(j["attempts"] == 1 for j in jobs)   # a paused job is not a failed attempt
    assert (d.watch / "long.en.srt").exists() and (d.watch / "short.en.srt").exists()
    wait_for(lambda: d.get("/readyz")[0] == 200, 10, 0.1, "ready again")


def test_sigterm_requeues_a_long_job_and_exits_cleanly(daemon_factory, media):
    d = daemon_factory({"shutdown_grace_seconds": 0.5})
    d.start()
    long_speech(d.tmp, d.watch / "long.wav")
    wait_for(lambda: any(j["current_stage"] == "transcribe" for j in d.jobs()), 60, 0.05,
             "transcription under way")
    assert d.stop(signal.SIGTERM, timeout=30) == 0
    (job,) = d.jobs()
    assert job["status"] == "queued" and job["attempts"] == 0
    assert not (d.watch / "long.en.srt").exists() and temp_files(d.watch) == []
    d.start()
    (job,) = d.wait_jobs(1, timeout=300)
    assert job["status"] == "succeeded" and job["attempts"] == 1


def test_file_deleted_during_transcription_fails_as_vanished(daemon_factory, media):
    d = daemon_factory().start()
    target = d.watch / "deleted.wav"
    gen.speech_wav(d.tmp / "speech.wav", [media / "jfk.flac"] * 3)
    os.rename(d.tmp / "speech.wav", target)
    wait_for(lambda: any(j["current_stage"] == "transcribe" for j in d.jobs()), 60, 0.05,
             "transcription under way")
    target.unlink()      # the user deletes it while it is being transcribed; the folder stays
    (job,) = d.wait_jobs(1)
    assert (job["status"], job["reason"], job["error_stage"]) == ("failed", "vanished", "write")
    assert not (d.watch / "deleted.en.srt").exists() and temp_files(d.watch) == []
    shutil.copy(media / "jfk.flac", d.watch / "next.flac")     # and the daemon goes on
    assert wait_status(d, d.watch / "next.flac", "succeeded")["attempts"] == 1
