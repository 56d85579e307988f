"""The one-shot and diagnostic commands, run as a user would."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import JFK_TEXT, REPO
from tests.harness import media as gen
from tests.harness.quality import check_readability, parse_srt, word_error_rate

pytestmark = pytest.mark.slow


def scribewatch(*args, cwd):
    return subprocess.run([sys.executable, "-m", "scribewatch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_transcribe_one_shot_writes_subtitles_and_reports_progress(tmp_path, media, model_dir):
    shutil.copy(media / "jfk.flac", tmp_path / "speech.flac")
    (tmp_path / "bad.mp4").write_text("not a film")
    result = scribewatch("transcribe", "--model", model_dir, "--output-formats", "srt,txt",
                         "--cpu-threads", "2", "--temperature", "0", "speech.flac", "bad.mp4",
                         cwd=tmp_path)
    assert result.returncode == 1, result.stderr          # one file failed
    assert "[probe/not_media]" in result.stderr and "bad.mp4" in result.stderr
    assert "11.0/11.0 s audio" in result.stderr           # the progress bar reached the end
    written = result.stdout.split()
    assert written == [str(tmp_path / "speech.en.srt"), str(tmp_path / "speech.en.txt")]
    cues = parse_srt((tmp_path / "speech.en.srt").read_text())
    assert check_readability(cues) == []
    assert word_error_rate(JFK_TEXT, " ".join(c.text for c in cues)) < 0.10


def test_check_prints_resolved_config_and_problems(tmp_path, model_dir):
    (tmp_path / "inbox").mkdir()
    result = scribewatch("check", "--model", model_dir, "--watch", "inbox", "--beam-size", "3",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = yaml.safe_load(result.stdout.split("# checks")[0])
    assert resolved["beam_size"] == 3 and resolved["watch_dirs"] == ["inbox"]
    assert "ok   model tiny.en loads on cpu/int8" in result.stdout
    assert "GPU" in result.stdout or "gpu" in result.stdout

    result = scribewatch("check", "--model", model_dir, "--watch", "missing", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL watch folder missing readable" in result.stdout


FAILURE_LINE = re.compile(
    r"^failed (?P<path>\S+): (?P<message>.+) \[(?P<stage>\w+)/(?P<reason>\w+)\]$")


def test_transcribe_goes_on_past_bad_files_with_one_line_each(tmp_path, media, model_dir):
    # Issue 11: a garbled MP4 first used to end the run with a traceback; jfk.flac was never done.
    gen.codecless_mp4(gen.load_speech(media / "jfk.flac", 2.0), tmp_path / "garbled.mp4")
    (tmp_path / "notes.mp4").write_text("a shopping list, not a film\n" * 10)
    (tmp_path / "empty.mp3").write_bytes(b"")
    shutil.copy(media / "jfk.flac", tmp_path / "speech.flac")
    result = scribewatch("transcribe", "--model", model_dir, "--output-formats", "srt",
                         "--cpu-threads", "2", "--temperature", "0", "garbled.mp4", "notes.mp4",
                         "empty.mp3",
                         "speech.flac", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    failures = [m.groupdict() for line in result.stderr.splitlines()
                if (m := FAILURE_LINE.match(line))]
    assert [(Path(f["path"]).name, f["stage"], f["reason"]) for f in failures] == [
        ("garbled.mp4", "decode", "decode_error"), ("notes.mp4", "probe", "not_media"),
        ("empty.mp3", "probe", "empty_file")]
    assert sum(line.startswith("failed ") for line in result.stderr.splitlines()) == 3
    garbled = failures[0]["message"]
    assert garbled == "no decoder for the audio stream (a damaged header, or a codec FFmpeg lacks)"
    # …and the good file after them was done.
    assert result.stdout.split() == [str(tmp_path / "speech.en.srt")]
    cues = parse_srt((tmp_path / "speech.en.srt").read_text())
    assert word_error_rate(JFK_TEXT, " ".join(c.text for c in cues)) < 0.10


def test_transcribe_of_a_mistyped_path_says_no_such_file(tmp_path, model_dir):
    (tmp_path / "notes.wav").write_text("not audio")
    result = scribewatch("transcribe", "--model", model_dir, "speach.flac", "notes.wav",
                         cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"failed {tmp_path / 'speach.flac'}: no such file [probe/vanished]" in lines
    assert any(FAILURE_LINE.match(line) and "notes.wav" in line and "[probe/not_media]" in line
               for line in lines), result.stderr   # and it went on to the next file
    assert "the file is gone" not in result.stderr and "Traceback" not in result.stderr


def test_transcribe_applies_the_daemons_skip_rules_and_says_so(tmp_path, media, model_dir):
    shutil.copy(media / "jfk.flac", tmp_path / "speech.flac")
    mine = "1\n00:00:00,000 --> 00:00:01,000\nmy own subtitle\n"
    (tmp_path / "speech.en.srt").write_text(mine)
    gen.silence_wav(tmp_path / "quiet.wav")
    result = scribewatch("transcribe", "--model", model_dir, "speech.flac", "quiet.wav",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert (f"skipped {tmp_path / 'speech.flac'}: speech.en.srt already exists "
            "[subtitle_exists]") in lines, result.stderr
    assert any(line.startswith(f"skipped {tmp_path / 'quiet.wav'}: no speech found")
               and line.endswith("[no_speech]") for line in lines), result.stderr
    assert (tmp_path / "speech.en.srt").read_text() == mine and not result.stdout
    assert not (tmp_path / "quiet.en.srt").exists()
