"""One daemon per job store, and a job store only where SQLite's WAL mode is safe.

* `InstanceLock`: `scribewatch run` holds an exclusive `flock` on `<db>.lock` for its whole
  life. Two daemons on one store would each re-queue the other's running job at start
  (crash recovery) and transcribe the same files twice. The kernel drops the lock when the
  process ends, however it ends (kill -9 too), so a stale lock file never blocks a restart.
  The file holds the owner's pid and host only to name them in the refusal.
* `network_filesystem`: WAL keeps its index in shared memory (`<db>-shm`, mmap) and relies on
  POSIX locks; neither works reliably over NFS, SMB/CIFS and similar, so a store there can be
  corrupted. The daemon refuses such a store; a FUSE filesystem may be local (mergerfs) or
  not (sshfs, rclone), so it is only warned about.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

# Filesystem types (mountinfo's "fstype", before any ".subtype") that are remote.
NETWORK_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "ocfs2", "gfs2", "9p", "davfs", "coda", "orangefs", "pvfs2",
})


class StoreInUse(Exception):
    """Another live process holds the store's lock."""

    def __init__(self, db: Path, owner: dict):
        self.db, self.owner = db, owner
        pid, host = owner.get("pid", "?"), owner.get("host", "?")
        since = owner.get("started_at")
        when = (f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"
                if since else "")
        super().__init__(
            f"the job store {db} is in use by another scribewatch "
            f"(pid {pid} on host {host}{when}); "
            f"stop that one first, or give this one its own store (--db PATH)")


def lock_path(db: str | os.PathLike) -> Path:
    return Path(os.path.abspath(db)).with_name(Path(db).name + ".lock")


class InstanceLock:
    """`acquire()` or raise StoreInUse; held until `release()` or the process ends."""

    def __init__(self, db: str | os.PathLike):
        self.db = Path(os.path.abspath(db))
        self.path = lock_path(db)
        self._fd: int | None = None

    def acquire(self) -> "InstanceLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise StoreInUse(self.db, owner) from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": time.time(), "db": str(self.db)}).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing drops the flock; the file stays (harmless, reused)
            self._fd = None


def _read_owner(fd: int) -> dict:
    # The owner writes its record right after locking: a refusal at that instant may read an
    # empty file, so look again briefly before giving up on naming it.
    for _ in range(20):
        try:
            data = os.pread(fd, 4096, 0)
            if data.strip():
                return json.loads(data)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


# -- filesystem type ---------------------------------------------------------------------------
def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) per line of /proc/<pid>/mountinfo (proc(5))."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or not tail:
            continue
        mounts.append((_unescape(fields[4]), tail[0], _unescape(tail[1]) if len(tail) > 1 else ""))
    return mounts


def filesystem_of(path: str | os.PathLike, mountinfo: str | None = None) -> tuple[str, str, str]:
    """(mount point, fs type, source) of the mount holding `path` (or its nearest existing
    parent: the store's file may not exist yet). The last mount on the longest matching
    mount point wins, as in the kernel (a later mount hides an earlier one). `mountinfo`: a
    mount table's text instead of this process's /proc/self/mountinfo."""
    if mountinfo is None:   # this machine: follow symlinks to where the folder really is
        p = Path(os.path.abspath(path))
        while not p.exists() and p != p.parent:
            p = p.parent
        real = os.path.realpath(p)
        mountinfo = Path("/proc/self/mountinfo").read_text()
    else:                   # another machine's table: the path as given
        real = os.path.abspath(path)
    best: tuple[str, str, str] = ("/", "unknown", "")
    best_len = -1
    for mount_point, fstype, source in parse_mountinfo(mountinfo):
        mp = mount_point.rstrip("/") or "/"
        if real == mp or real.startswith(mp if mp == "/" else mp + "/"):
            if len(mp) >= best_len:
                best, best_len = (mp, fstype, source), len(mp)
    return best


def network_filesystem(path: str | os.PathLike,
                       mountinfo: str | None = None) -> tuple[str, str] | None:
    """("refuse", why) for a path on a network filesystem, ("warn", why) on FUSE (sshfs and
    rclone are remote, mergerfs is not: no way to tell), None when it is local. `fuseblk`
    (ntfs-3g, exfat on a local disk) is local."""
    mount_point, fstype, source = filesystem_of(path, mountinfo)
    base = fstype.split(".", 1)[0]
    where = f"{mount_point} is {fstype}" + (f" ({source})" if source else "")
    if base in NETWORK_FS_TYPES:
        return "refuse", f"{where}, a network filesystem"
    if base == "fuse":
        return "warn", f"{where}, a FUSE filesystem that may be remote"
    return None
