"""A suspect transcript is re-run once with safer settings and flagged in the job record.

Real model, real speech, real daemon in-process. Which transcripts are suspect is the guard's
business (tests/unit/pipeline/test_guards.py); here the guard is told to distrust the first
result so the
daemon's re-run path itself is exercised.
"""

import shutil

import pytest

from scribewatch.pipeline import config
from scribewatch.pipeline.contract import NullReporter
from scribewatch.pipeline.daemon import service as daemon_mod
from tests.harness import wait_for
from tests.harness.quality import distrust_the_first_transcript

pytestmark = pytest.mark.slow


class CountingReporter(NullReporter):
    def __init__(self):
        self.suspects = 0
        self.outcomes = []

    def suspect_transcript(self):
        self.suspects += 1

    def job_finished(self, outcome, **kw):
        self.outcomes.append((outcome, kw.get("reason")))


def test_suspect_result_is_rerun_and_flagged(tmp_path, media, model_dir, monkeypatch):
    calls = distrust_the_first_transcript(monkeypatch)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = config.load(None, environ={}, flags={
        "watch_dirs": [str(inbox)], "db": str(tmp_path / "j.db"), "model": model_dir,
        "stability_seconds": 0.3, "cpu_threads": 2, "temperature": 0})
    reporter = CountingReporter()
    d = daemon_mod.Daemon(cfg, reporter=reporter)
    d.start()
    try:
        shutil.copy(media / "jfk.flac", inbox / "a.flac")
        wait_for(lambda: reporter.outcomes, 120, 0.1, "job finished")
        job = d.store.history(limit=1)[0]
    finally:
        d.stop(grace=5)
    assert reporter.outcomes == [("succeeded", None)]
    assert len(calls) == 2 and reporter.suspects == 1
    assert job.suspect == ["first run: repetition loop (test)"]
    assert (inbox / "a.en.srt").read_text().count("country") == 2   # the re-run's good text
