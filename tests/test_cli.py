"""The one-shot and diagnostic commands, run as a user would."""

import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline.subtitles import check_readability, parse_srt
from pipeline.guards import word_error_rate
from conftest import JFK_TEXT, REPO

pytestmark = pytest.mark.slow


def scribewatch(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_transcribe_one_shot_writes_subtitles_and_reports_progress(tmp_path, media, model_dir):
    shutil.copy(media / "jfk.flac", tmp_path / "speech.flac")
    (tmp_path / "bad.mp4").write_text("not a film")
    result = scribewatch("transcribe", "--model", model_dir, "--output-formats", "srt,txt",
                         "--cpu-threads", "2", "speech.flac", "bad.mp4", cwd=tmp_path)
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
