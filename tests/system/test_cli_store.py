"""The store commands (`history`, `retry`) as a new user runs them, the single-instance lock and
the job store's filesystem check. No model: these are quick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scribewatch.pipeline.instance_lock import (
    InstanceLock,
    StoreInUse,
    filesystem_of,
    lock_path,
    network_filesystem,
    parse_mountinfo,
)
from scribewatch.pipeline.store.sqlite import SqliteStore
from tests.harness import REPO


def scribewatch(*args, cwd, env=None):
    environment = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run([sys.executable, "-m", "scribewatch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=environment)


def failed_job_store(db: Path) -> int:
    store = SqliteStore(db)
    job_id = store.enqueue(str(db.parent / "talk.mp3"), str(db.parent), 10, 1, "fp")
    store.claim_next("0")
    store.finish(job_id, "failed", reason="disk_full", stage="write", message="no space")
    store.close()
    return job_id


@pytest.mark.parametrize("how", ["config file", "environment"])
def test_history_and_retry_use_the_configured_store_without_flags(tmp_path, how):
    db = tmp_path / "data" / "jobs.db"
    db.parent.mkdir()
    job_id = failed_job_store(db)
    env = {}
    if how == "config file":
        (tmp_path / "scribewatch.yaml").write_text(yaml.safe_dump({"db": "data/jobs.db"}))
    else:
        env = {"SCRIBEWATCH_DB": str(db)}

    result = scribewatch("history", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (job,) = json.loads(result.stdout)
    assert (job["id"], job["status"], job["reason"]) == (job_id, "failed", "disk_full")

    result = scribewatch("retry", "--all-failed", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"1 failed job(s) queued again: {job_id}" in result.stdout
    result = scribewatch("history", cwd=tmp_path, env=env)
    assert result.returncode == 0 and " queued " in result.stdout, result.stdout + result.stderr


def test_history_without_a_store_names_the_path(tmp_path):
    result = scribewatch("history", cwd=tmp_path)
    assert result.returncode == 2
    assert "scribewatch.db" in result.stderr and "no job store" in result.stderr


def test_retry_path_and_under_requeue_the_newest_job_of_finished_files(tmp_path):
    lib = tmp_path / "lib"
    (lib / "show").mkdir(parents=True)
    store = SqliteStore(tmp_path / "jobs.db")
    ids = {}
    for name, outcome in (("a.mkv", "succeeded"), ("show/b.mkv", "succeeded"),
                          ("show/c.mkv", "skipped"), ("show/d.mkv", "running")):
        path = str(lib / name)
        ids[name] = store.enqueue(path, str(lib), 1, 1, "fp")
        store.claim_next("0")
        if outcome != "running":
            store.finish(ids[name], outcome, outputs=[path + ".en.srt"])
    store.close()

    result = scribewatch("retry", "--db", "jobs.db", "--path", "lib/show/c.mkv", "--path",
                         "lib/show/d.mkv", "--path", "lib/nothing.mkv",
                         "--path", str(lib / "show" / "c.mkv"), cwd=tmp_path)
    assert result.returncode == 1   # one of them the store has never seen
    assert result.stdout.count(f"queued again: job {ids['show/c.mkv']} (skipped before)") == 1
    assert f"already running: job {ids['show/d.mkv']}" in result.stderr
    assert "no job for lib/nothing.mkv" in result.stderr

    # A folder: only what succeeded by default (a skip may be a subtitle the user made).
    result = scribewatch("retry", "--db", "jobs.db", "--under", "lib", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 job(s) queued again" in result.stdout
    store = SqliteStore(tmp_path / "jobs.db")
    jobs = {Path(j.path).relative_to(lib).as_posix(): j for j in store.history(limit=None)}
    assert {k: j.status for k, j in jobs.items()} == {
        "a.mkv": "queued", "show/b.mkv": "queued", "show/c.mkv": "queued",
        "show/d.mkv": "running"}
    assert all(jobs[k].attempts == 0 for k in ("a.mkv", "show/b.mkv", "show/c.mkv"))
    assert len(jobs) == 4   # the rows themselves went back: one active row per file
    # Their earlier outputs stay known: the subtitle beside them is theirs to replace.
    assert jobs["a.mkv"].outputs == [str(lib / "a.mkv") + ".en.srt"]
    store.close()

    result = scribewatch("retry", "--db", "jobs.db", "--status", "failed", cwd=tmp_path)
    assert result.returncode == 2 and "--under" in result.stderr


# -- the single-instance lock ------------------------------------------------------------------
def test_a_second_lock_on_the_same_store_names_the_owner(tmp_path):
    db = tmp_path / "jobs.db"
    first = InstanceLock(db).acquire()
    try:
        assert lock_path(db) == tmp_path / "jobs.db.lock"
        owner = json.loads(lock_path(db).read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(StoreInUse) as refused:
            InstanceLock(db).acquire()   # flock: a second open file conflicts, same process too
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and os.uname().nodename in message
        assert str(db) in message
    finally:
        first.release()
    InstanceLock(db).acquire().release()   # released: the next one gets it


def test_the_lock_dies_with_its_process(tmp_path):
    db = tmp_path / "jobs.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.instance_lock import InstanceLock;"
         f"InstanceLock({str(db)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreInUse, match=f"pid {holder.pid} "):
            InstanceLock(db).acquire()
    finally:
        holder.kill()
        holder.wait()
    InstanceLock(db).acquire().release()   # the kernel dropped it at SIGKILL; the file remains


# -- where the store may live ------------------------------------------------------------------
# Lines in the format of /proc/self/mountinfo (proc(5)), as on a NAS-backed media server.
MOUNTINFO = r"""22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
25 22 0:23 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,inode64
61 22 0:52 / /mnt/nas rw,relatime shared:35 - nfs4 nas.lan:/export/media rw,vers=4.2,rsize=1048576
62 22 0:53 / /mnt/smb\040share rw,relatime shared:36 - cifs //nas/share rw,vers=3.1.1,cache=strict
63 22 0:54 / /mnt/pool rw,relatime shared:37 - fuse.mergerfs pool rw,user_id=0,group_id=0
64 61 8:17 / /mnt/nas/local rw,relatime shared:38 - xfs /dev/sdb1 rw,attr2
65 22 8:33 / /mnt/usb rw,relatime shared:39 - fuseblk /dev/sdc1 rw,user_id=0,group_id=0
"""


def test_mountinfo_lines_are_parsed():
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/nas", "nfs4", "nas.lan:/export/media") in mounts
    assert ("/mnt/smb share", "cifs", "//nas/share") in mounts   # \040 is a space


@pytest.mark.parametrize("path, expected", [
    ("/srv/scribewatch/jobs.db", None),
    ("/mnt/nas/scribewatch/jobs.db", "refuse"),
    ("/mnt/nasty/jobs.db", None),                 # not below /mnt/nas
    ("/mnt/smb share/jobs.db", "refuse"),
    ("/mnt/pool/jobs.db", "warn"),
    ("/mnt/nas/local/jobs.db", None),             # a local disk mounted inside the NFS tree
    ("/mnt/usb/jobs.db", None),
])
def test_network_filesystems_are_recognised(path, expected):
    found = network_filesystem(path, MOUNTINFO)
    assert (found[0] if found else None) == expected, found


def test_the_real_local_folder_is_local(tmp_path):
    mount_point, fstype, _ = filesystem_of(tmp_path / "not-yet" / "jobs.db")
    assert fstype not in ("unknown", "") and str(tmp_path).startswith(mount_point)
    assert network_filesystem(tmp_path / "jobs.db") is None, fstype
