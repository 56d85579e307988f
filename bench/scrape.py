"""Scrape: `/metrics` latency (p50/p99) and size while the daemon works, with 1 and with 20
concurrent scrapers, and the series count from startup to 1,000 finished jobs.

Scrapers speak HTTP/1.1 with keep-alive and Prometheus 2.42's Accept and gzip headers, from an
asyncio client (one process, no thread per scraper, so the client adds microseconds, not a GIL
queue). Latency = request written -> whole body read. Modes with 20 scrapers:
* `burst`: all 20 fire at the same instant once a second — the worst case of 20 Prometheus
  servers that happen to share a phase (the target is judged on this one);
* `staggered`: each scrapes once a second at its own random phase — what 20 real servers do;
* `saturation`: each scrapes again as soon as it has its answer (throughput, no target).
"The daemon works" = a file is being transcribed throughout (a helper drops the next as soon as
the queue is empty).

Also measured: an idle daemon (what a scrape costs without a transcription competing for the
two cores), and an idle daemon whose job store holds 100,000 finished jobs.

Series boundedness: 1,000 jobs in a fixed mix (succeeded, failed not_media, skipped
subtitle_exists, skipped no_speech); the set of series after the first 100 must equal the set
after 1,000 (only values change).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from pathlib import Path

from bench import common, media
from bench.common import log
from bench.library import make_library, populate_store
from tests.harness import SHARED_MEDIA
from tests.harness import media as gen
from tests.harness.daemon import BenchDaemon

NAME = "scrape"
TARGETS = {"p99_ms_max_20_scrapers": 10.0, "new_series_after_first_100_jobs_max": 0}
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


# -- an asyncio HTTP/1.1 keep-alive scraper ------------------------------------------------------
class Scraper:
    def __init__(self, port: int, gzip_ok: bool = True):
        self.port = port
        self.gzip_ok = gzip_ok
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def scrape(self) -> tuple[float, int, bytes]:
        request = (f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: {ACCEPT}\r\n"
                   + ("Accept-Encoding: gzip\r\n" if self.gzip_ok else "")
                   + "User-Agent: Prometheus/2.42.0\r\n\r\n").encode()
        t0 = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        body = await self.reader.readexactly(length)
        return time.perf_counter() - t0, length, body

    async def close(self):
        if self.writer is not None:
            self.writer.close()


async def _burst(port: int, scrapers: int, rounds: int, interval: float) -> list[float]:
    clients = [Scraper(port) for _ in range(scrapers)]
    await asyncio.gather(*(c.connect() for c in clients))
    out: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    for r in range(rounds):
        await asyncio.sleep(max(0.0, start + r * interval - loop.time()))
        results = await asyncio.gather(*(c.scrape() for c in clients))
        out += [t for t, _, _ in results]
    await asyncio.gather(*(c.close() for c in clients))
    return out


async def _staggered(port: int, scrapers: int, seconds: float, interval: float) -> list[float]:
    rng = random.Random(1)
    out: list[float] = []

    async def one(phase: float):
        c = Scraper(port)
        await c.connect()
        loop = asyncio.get_running_loop()
        start = loop.time() + phase
        n = 0
        while start + n * interval < t_end:
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
            out.append((await c.scrape())[0])
            n += 1
        await c.close()

    t_end = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(one(rng.uniform(0, interval)) for _ in range(scrapers)))
    return out


async def _saturate(port: int, scrapers: int, seconds: float) -> tuple[list[float], float]:
    out: list[float] = []

    async def one():
        c = Scraper(port)
        await c.connect()
        while time.perf_counter() < t_end:
            out.append((await c.scrape())[0])
        await c.close()

    t0 = time.perf_counter()
    t_end = t0 + seconds
    await asyncio.gather(*(one() for _ in range(scrapers)))
    return out, len(out) / (time.perf_counter() - t0)


async def _sequential(port: int, count: int, pause: float, gzip_ok: bool = True):
    c = Scraper(port, gzip_ok)
    await c.connect()
    times, sizes, last = [], [], b""
    for _ in range(count):
        t, size, body = await c.scrape()
        times.append(t)
        sizes.append(size)
        last = body
        await asyncio.sleep(pause)
    await c.close()
    return times, sizes, last


def series(text: str) -> set[str]:
    """Every series (name + labels) of a text exposition."""
    return {line.rsplit(" ", 1)[0] if "}" not in line else line[:line.rindex("}") + 1]
            for line in text.splitlines() if line and not line.startswith("#")}


def exposition(d: BenchDaemon) -> str:
    status, body = d.get("/metrics")
    assert status == 200, body[:200]
    return body.decode()


def ms(values) -> dict:
    return common.summary(values, scale=1000.0, digits=2)


# -- keeping the daemon busy ---------------------------------------------------------------------
class KeepBusy(threading.Thread):
    """Drops the next speech file whenever nothing is queued, so a transcription always runs."""

    def __init__(self, d: BenchDaemon, source: Path):
        super().__init__(daemon=True)
        self.d, self.source, self.stop = d, source, threading.Event()
        self.dropped = 0

    def run(self):
        while not self.stop.is_set():
            if self.d.query("SELECT COUNT(*) AS n FROM jobs WHERE status='queued'")[0]["n"] == 0:
                gen.copy_closed(self.source, self.d.watch / f"busy-{self.dropped:04d}.wav")
                self.dropped += 1
            self.stop.wait(0.5)


def make_sources(folder: Path) -> dict[str, Path]:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    out = {"busy": folder / "busy.wav", "short": folder / "short.wav",
           "silence": folder / "silence.wav"}
    if not out["busy"].exists():
        samples, _ = media.concat(["license", "jfk", "L3", "L1", "jfk", "L5", "L2"], seed=3)
        gen.write_wav(out["busy"], samples)          # ~75 s: several seconds of work
        gen.write_wav(out["short"], media.clip("jfk")[: int(2.6 * gen.RATE)])
        gen.write_wav(out["silence"], np.zeros(3 * gen.RATE, dtype=np.float32))
    return out


def drop_mix(d: BenchDaemon, sources: dict, first: int, count: int) -> None:
    """Jobs `first`..`first+count-1` of the fixed mix: per 10, 5 succeed (a 2.6 s clip),
    2 fail (not_media), 2 are skipped (subtitle_exists), 1 is skipped (no_speech)."""
    for i in range(first, first + count):
        kind = i % 10
        name = d.watch / f"job-{i:05d}"
        if kind < 5:
            gen.copy_closed(sources["short"], name.with_suffix(".wav"))
        elif kind < 7:
            name.with_suffix(".mp3").write_bytes(b"this is not audio %d\n" % i)
        elif kind < 9:
            (d.watch / f"job-{i:05d}.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
            gen.copy_closed(sources["short"], name.with_suffix(".wav"))
        else:
            gen.copy_closed(sources["silence"], name.with_suffix(".wav"))


def measure_load(d: BenchDaemon, quick: bool) -> dict:
    """Latency figures for every scraper mode, now (the daemon is working meanwhile)."""
    seq_n, bursts, stagger_s, sat_s = (40, 5, 5, 3) if quick else (300, 30, 30, 10)
    seq_times, sizes, body = asyncio.run(_sequential(d.port, seq_n, 0.05))
    plain_times, plain_sizes, plain = asyncio.run(_sequential(d.port, max(10, seq_n // 5), 0.05,
                                                              gzip_ok=False))
    burst = asyncio.run(_burst(d.port, 20, bursts, 1.0))
    stagger = asyncio.run(_staggered(d.port, 20, stagger_s, 1.0))
    sat, rate = asyncio.run(_saturate(d.port, 20, sat_s))
    return {
        "single_scraper_ms": ms(seq_times),
        "single_scraper_no_gzip_ms": ms(plain_times),
        "bytes_gzip": int(sum(sizes) / len(sizes)),
        "bytes_uncompressed": int(sum(plain_sizes) / len(plain_sizes)),
        "series_openmetrics": len(series(plain.decode())),
        "burst_20_ms": ms(burst),
        "staggered_20_ms": ms(stagger),
        "saturation_20_ms": ms(sat),
        "saturation_20_scrapes_per_second": round(rate, 1),
    }


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    quick = args.quick
    res = common.Result(NAME, quick)
    res.targets = TARGETS
    total_jobs, checkpoint = (100, 20) if quick else (1000, 100)
    sources = make_sources(common.WORK / NAME / "media")
    d = BenchDaemon(common.WORK / NAME / "daemon", {"stability_seconds": 0.5})
    d.start()
    busy = None
    try:
        at_start = series(exposition(d))
        # 0. idle: what a scrape itself costs, without a transcription competing for the CPU
        idle = measure_load(d, quick)
        log(f"idle: burst p99 {idle['burst_20_ms']['p99']} ms, "
            f"single p99 {idle['single_scraper_ms']['p99']} ms")
        # 1. while the daemon works, fresh: every scraper mode
        gen.copy_closed(SHARED_MEDIA / "jfk.flac", d.watch / "warmup.flac")
        d.wait_finished(1, timeout=120)
        busy = KeepBusy(d, sources["busy"])
        busy.start()
        common.wait_for(lambda: d.status()["running"], 60, 0.05, "a running job")
        fresh = measure_load(d, quick)
        log(f"fresh, working: burst p99 {fresh['burst_20_ms']['p99']} ms, "
            f"single p99 {fresh['single_scraper_ms']['p99']} ms")
        busy.stop.set()
        busy.join()
        common.wait_for(lambda: d.active_count() == 0, 600, 0.25, "busy files done")
        base = d.finished_count()
        # 2. the job mix: series after the first `checkpoint` jobs, then after `total_jobs`
        drop_mix(d, sources, 0, checkpoint)
        d.wait_finished(base + checkpoint, timeout=600, interval=0.25)
        at_checkpoint = series(exposition(d))
        done = checkpoint
        while done < total_jobs:
            n = min(100, total_jobs - done)
            drop_mix(d, sources, done, n)
            done += n
            d.wait_finished(base + done, timeout=600, interval=0.25)
            log(f"{done} mix jobs finished")
        at_end_text = exposition(d)
        at_end = series(at_end_text)
        counts = {r["status"]: r["n"] for r in d.query(
            "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}
        # 3. after 1,000 jobs, working again: every scraper mode
        busy = KeepBusy(d, sources["busy"])
        busy.start()
        common.wait_for(lambda: d.status()["running"], 60, 0.05, "a running job")
        after = measure_load(d, quick)
        log(f"after {total_jobs} jobs, working: burst p99 {after['burst_20_ms']['p99']} ms")
        busy.stop.set()
        busy.join()
    finally:
        if busy is not None:
            busy.stop.set()
        d.stop()
    # 4. idle again, but with a 100,000-job store: does a scrape's cost grow with history?
    library = common.WORK / "library-100k"
    make_library(library)
    big = BenchDaemon(common.WORK / NAME / "big-store", {"watch_dirs": [str(library)]},
                        watch=[library])
    populate_store(big.db, library, include_without_subtitles=True)
    big.start()
    try:
        common.wait_for(big.startup_scan, 600, 0.2, "startup scan")
        common.wait_for(lambda: big.active_count() == 0, 600, 0.5, "empty queue")
        big_store = measure_load(big, quick)
        log(f"idle, 100,000-job store: burst p99 {big_store['burst_20_ms']['p99']} ms")
    finally:
        big.stop()
    new_series = sorted(at_end - at_checkpoint)
    worst_burst = max(fresh["burst_20_ms"]["p99"], after["burst_20_ms"]["p99"])
    res.measured = {
        "p50_ms_20_scrapers": max(fresh["burst_20_ms"]["p50"], after["burst_20_ms"]["p50"]),
        "p99_ms_20_scrapers": worst_burst,
        "p99_ms_single_scraper": max(fresh["single_scraper_ms"]["p99"],
                                     after["single_scraper_ms"]["p99"]),
        "bytes_gzip": after["bytes_gzip"],
        "bytes_uncompressed": after["bytes_uncompressed"],
        "series_at_start": len(at_start),
        "series_after_first_jobs": len(at_checkpoint),
        "series_after_all_jobs": len(at_end),
        "new_series_after_first_jobs": len(new_series),
        "new_series_examples": new_series[:10],
        "jobs_by_status": counts,
        "idle": idle,
        "idle_with_100k_jobs_in_store": big_store,
        "fresh_while_working": fresh,
        "after_jobs_while_working": after,
    }
    res.config = {"jobs": total_jobs, "series_checkpoint_after_jobs": checkpoint,
                  "accept": ACCEPT, "accept_encoding": "gzip",
                  "busy_file": "75 s WAV of speech, re-dropped whenever the queue is empty"}
    res.check("p99_20_scrapers", worst_burst < TARGETS["p99_ms_max_20_scrapers"])
    res.check("series_bounded", len(new_series) <= TARGETS["new_series_after_first_100_jobs_max"])
    res.finish()


if __name__ == "__main__":
    main()
