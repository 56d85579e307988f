"""A claimed job's hooks against a real job store: what they record, fenced by the lease."""

from __future__ import annotations

from scribewatch.pipeline.contract import NullReporter
from scribewatch.pipeline.daemon.claimed_job import Running
from scribewatch.pipeline.store import LeaseSettings, SqliteStore


def test_outputs_about_to_be_renamed_are_the_jobs_own_in_the_store(tmp_path):
    store = SqliteStore(tmp_path / "jobs.db", LeaseSettings("n1"))
    job_id = store.enqueue("/w/a.mkv", "/w", 1, 1, "fp")
    job = store.claim_next("0")
    running = Running(job, "0", None, store, NullReporter(), lease_seconds=60,
                      heartbeat_seconds=10)
    running.writing(["/w/a.en.srt"])
    running.writing(["/w/a.en.srt", "/w/a.en.vtt"])     # a second write (the translation)
    assert store.get(job_id).outputs == ["/w/a.en.srt", "/w/a.en.vtt"]
    # Another node took the job over: this one's record changes nothing.
    store.requeue(job_id, token=job.lease_token)
    again = store.claim_next("1")
    running.writing(["/w/a.de.srt"])
    assert store.get(job_id).outputs == ["/w/a.en.srt", "/w/a.en.vtt"]
    assert again.outputs == ["/w/a.en.srt", "/w/a.en.vtt"], "the re-run's own outputs"
    store.close()
