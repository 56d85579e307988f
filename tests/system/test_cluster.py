"""Several real daemons on one PostgreSQL job store and one folder: each file subtitled exactly
once; a node killed or paused mid-job is taken over after its lease and cannot overwrite the
result; PostgreSQL stopped and started during work loses and doubles nothing; a SQLite history
migrates. Real processes, a real PostgreSQL 15, the real model on real speech."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scribewatch.pipeline.store.sqlite import SqliteStore
from tests.harness import REPO, SHARED_MEDIA, model_dir, wait_for
from tests.harness import media as gen
from tests.harness.cluster import HEARTBEAT_SECONDS, LEASE_SECONDS, cluster

pytestmark = pytest.mark.slow
RATE = gen.RATE


def short_speech(folder: Path, count: int, seconds: float = 3.0) -> list[Path]:
    """`count` distinct short cuts of real speech (jfk.flac), made outside the library."""
    jfk = gen.load_speech(SHARED_MEDIA / "jfk.flac")
    return [gen.write_wav(folder / f"talk{i:02d}.wav",
                          jfk[int(i * 0.5 * RATE):int((i * 0.5 + seconds) * RATE)])
            for i in range(count)]


def long_speech(path: Path, repeats: int = 2) -> Path:
    """~23 s of real speech: long enough to stop a node in the middle of transcribing it."""
    jfk = gen.load_speech(SHARED_MEDIA / "jfk.flac")
    gap = np.zeros(int(0.5 * RATE), np.float32)
    return gen.write_wav(path, np.concatenate([jfk, gap] * repeats))


@pytest.fixture
def nodes(tmp_path, postgres_server, postgres_url):
    library = tmp_path / "library"
    library.mkdir()
    made = cluster(tmp_path, postgres_server, postgres_url, library, model_dir())
    yield made
    for node in made:
        if node.proc is not None and node.proc.poll() is None:
            os.kill(node.pid, signal.SIGCONT)   # a paused node ends too
            node.stop(signal.SIGKILL)


def assert_twin_of_a_refused(tmp_path, postgres_server, postgres_url, library) -> None:
    """A second daemon started under node a's name exits at once, saying why."""
    twin = cluster(tmp_path / "twin", postgres_server, postgres_url, library, model_dir(),
                   names=("a",))[0]
    twin.start(wait_ready=False)
    try:
        assert twin.proc.wait(60) == 1
    finally:
        twin.stop()
    assert "another scribewatch daemon runs as node 'a'" in twin.log()


def subtitles(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.srt"))


def test_two_nodes_share_a_folder_and_subtitle_each_file_exactly_once(nodes, tmp_path):
    a, b = nodes
    library = tmp_path / "library"
    a.start()
    b.start()
    staging = tmp_path / "staging"
    for f in short_speech(staging, 12):
        os.rename(f, library / f.name)
    jobs = a.wait_jobs(12, timeout=240)
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    assert len(a.jobs()) == 12                       # one job per file: no duplicate intake
    assert len(subtitles(library)) == 12
    assert {j["node"] for j in jobs} == {"a", "b"}   # both did work
    assert all(j["attempts"] == 1 and j["takeovers"] == 0 for j in jobs)
    assert {j["library"] for j in jobs} == {"media"}
    status = b.status()
    assert status["node"] == "b" and status["store"] == {"kind": "postgresql", "up": True,
                                                         "error": None}
    history = json.loads(a.cli("history", "--store", a.store_url, "--json").stdout)
    assert {h["node"] for h in history} == {"a", "b"}
    table = a.cli("history", "--store", a.store_url).stdout
    assert " node " in table.splitlines()[0]


def _running_on(node, stage: str = "transcribe"):
    rows = node.query("SELECT * FROM jobs WHERE status = 'running' AND node = ? "
                      "AND current_stage = ?", (node.node, stage))
    return rows[0] if rows else None


def test_a_node_killed_mid_job_is_taken_over_after_its_lease(nodes, tmp_path):
    library = tmp_path / "library"
    for node in nodes:
        node.start()
    time.sleep(10)   # both long up: a restart's wait for suspect jobs plays no part here
    long_speech(tmp_path / "film.wav")
    os.rename(tmp_path / "film.wav", library / "film.wav")
    victim, job = wait_for(lambda: next(((n, j) for n in nodes if (j := _running_on(n))), None),
                           60, 0.05, "a node transcribing")
    survivor = next(n for n in nodes if n is not victim)
    killed = time.monotonic()
    victim.kill()
    row = wait_for(lambda: next((j for j in survivor.jobs() if j["node"] == survivor.node
                                 and j["status"] == "running"), None), 60, 0.1, "takeover")
    took = time.monotonic() - killed
    # The target: lease + heartbeat + 2 s (housekeeping looks once a second).
    assert took <= LEASE_SECONDS + HEARTBEAT_SECONDS + 2.0, took
    done = survivor.wait_jobs(1, timeout=180)[0]
    assert (done["id"], done["status"], done["node"]) == (job["id"], "succeeded", survivor.node)
    assert (done["takeovers"], done["crashes"], row["attempts"]) == (1, 1, 1)
    assert done["crash_point"].startswith("transcribe")
    assert subtitles(library) == [library / "film.en.srt"]
    assert "scribewatch_job_takeovers_total 1.0" in survivor.metrics()
    assert f"lease of node {victim.node} ran out" in survivor.log()


def test_a_paused_node_past_its_lease_cannot_overwrite_the_result(nodes, tmp_path):
    a, b = nodes
    library = tmp_path / "library"
    a.start()
    b.start()
    os.kill(b.pid, signal.SIGSTOP)                 # b paused: a alone claims the file
    long_speech(tmp_path / "film.wav")
    os.rename(tmp_path / "film.wav", library / "film.wav")
    job = wait_for(lambda: _running_on(a), 60, 0.05, "node a transcribing")
    os.kill(a.pid, signal.SIGSTOP)                 # a freezes mid-job: swap, a VM pause
    os.kill(b.pid, signal.SIGCONT)
    done = b.wait_jobs(1, timeout=180)[0]
    assert (done["id"], done["node"], done["status"]) == (job["id"], "b", "succeeded")
    srt = library / "film.en.srt"
    before = (srt.stat().st_ino, srt.read_bytes())
    os.kill(a.pid, signal.SIGCONT)                 # a wakes up and carries on
    wait_for(lambda: "lease lost" in a.log_since_start(), 60, 0.2, "node a noticing")
    time.sleep(2)
    assert (srt.stat().st_ino, srt.read_bytes()) == before
    assert subtitles(library) == [srt]
    final = a.jobs()
    assert len(final) == 1 and (final[0]["node"], final[0]["status"]) == ("b", "succeeded")
    assert not [p for p in library.iterdir() if p.name.startswith(".")]   # no temp left
    assert a.alive() and b.alive()


def test_postgres_stopped_and_restarted_during_work(nodes, tmp_path, postgres_server,
                                                   postgres_url):
    a, b = nodes
    for node in nodes:   # leases longer than the outage: nobody's job is taken over
        node.config.update(lease_seconds=20, heartbeat_seconds=1)
        node.config_path.write_text(__import__("yaml").safe_dump(node.config))
    library = tmp_path / "library"
    a.start()
    b.start()
    staging = tmp_path / "staging"
    files = short_speech(staging, 12, seconds=4.0)
    for f in files[:6]:
        os.rename(f, library / f.name)
    wait_for(lambda: a.finished_count() >= 1, 120, 0.1, "work under way")
    postgres_server.stop()
    for f in files[6:]:                   # arrivals while the store is away
        os.rename(f, library / f.name)

    def not_ready(node):
        code, body = node.get("/readyz")
        return code == 503 and b"job store unreachable" in body
    wait_for(lambda: not_ready(a) and not_ready(b), 30, 0.2, "/readyz 503 on both nodes")
    time.sleep(3)
    postgres_server.start()
    wait_for(lambda: a.ready() and b.ready(), 60, 0.2, "both ready again")
    jobs = a.wait_jobs(12, timeout=300)
    wait_for(lambda: len(subtitles(library)) == 12, 60, 0.2, "12 subtitles")
    assert len(a.jobs()) == 12 and all(j["status"] == "succeeded" for j in jobs)
    assert all(j["takeovers"] == 0 for j in jobs)
    assert "unreachable" in a.log() and "reachable again" in a.log()
    # The restart ended the session that held node a's name; a took it again when the store
    # came back, so a second daemon under that name is still refused.
    assert_twin_of_a_refused(tmp_path, postgres_server, postgres_url, library)


def test_migrate_moves_a_sqlite_history_into_postgres(tmp_path, postgres_url):
    db = tmp_path / "old.db"
    store = SqliteStore(db)
    done = store.enqueue("/w/a.mp3", "/w", 1, 1, "fa")
    store.claim_next("0")
    store.finish(done, "succeeded", audio_seconds=11.0, outputs=["/w/a.en.srt"])
    store.record_skipped("/w/b.mp3", "/w", 1, 1, "fb", "subtitle_exists", "b.en.srt exists")
    store.enqueue("/w/c.mp3", "/w", 1, 1, "fc")
    store.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "scribewatch", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    moved = cli("migrate", "--from", f"sqlite:///{db}", "--to", postgres_url)
    assert moved.returncode == 0, moved.stderr
    assert "3 job(s) copied" in moved.stdout
    rows = json.loads(cli("history", "--store", postgres_url, "--json").stdout)
    assert [(r["id"], r["status"], r["library"], r["rel_path"]) for r in reversed(rows)] == [
        (1, "succeeded", "/w", "a.mp3"), (2, "skipped", "/w", "b.mp3"),
        (3, "queued", "/w", "c.mp3")]
    assert rows[-1]["outputs"] == ["/w/a.en.srt"]
    again = cli("migrate", "--from", f"sqlite:///{db}", "--to", postgres_url)
    assert again.returncode == 2 and "holds jobs already" in again.stderr


def test_a_second_daemon_under_a_node_name_in_use_is_refused(nodes, tmp_path, postgres_server,
                                                           postgres_url):
    a, _ = nodes
    a.start()
    assert_twin_of_a_refused(tmp_path, postgres_server, postgres_url, tmp_path / "library")
    assert a.ready()
