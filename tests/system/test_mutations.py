"""No bad file is called a bug: a seeded corpus of damaged media, made at test time.

Clean sources are three seconds of real speech (jfk.flac) as MP4/AAC, MKV/Opus, MP3, WAV and
FLAC, made with PyAV; each is then damaged the ways files really break: bytes flipped in a
region or in the header, cut short, a zeroed header, two files spliced, and the garbling of
issue 11 (every 97th byte overwritten from a third of the way in). Every mutant must end as
audio, or as a named, permanent reason with one short line — never `internal_error`, never a
traceback.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from scribewatch.pipeline import stages
from scribewatch.pipeline.contract import FAILURE_REASONS
from scribewatch.pipeline.errors import SkipJob, StageError
from tests.harness import SHARED_MEDIA
from tests.harness import media as gen

SEED = 11
CLIP_SECONDS = 3.0
# What damaged media may fail as: all about the file, none retried (a retry reads the same bytes).
MEDIA_FAILURES = {"empty_file", "not_media", "corrupt_container", "no_audio_stream", "decode_error",
                  "timestamp_jump"}
MEDIA_SKIPS = {"no_speech"}

# name -> (codec, stream sample rate); None: PCM through the wave module.
SOURCES = {
    "mp4": ("aac", 16000),
    "mkv": ("libopus", 48000),   # Opus takes 48 kHz only
    "mp3": ("libmp3lame", 16000),
    "wav": None,
    "flac": ("flac", 16000),
}
# kind -> mutants per source
KINDS = {"flip": 2, "header_flip": 2, "truncate": 2, "zero_header": 2, "splice": 2, "stride": 1}


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: Path
    source: str
    kind: str


def _flip(data: bytes, rng: random.Random) -> bytes:
    """Flip ~10 % of the bytes of one 256 B–4 KiB region (a bad sector, a broken download)."""
    d = bytearray(data)
    start = rng.randrange(len(d) // 8, len(d) * 7 // 8)
    for i in range(start, min(len(d), start + rng.randint(256, 4096))):
        if rng.random() < 0.1:
            d[i] ^= rng.randint(1, 255)
    return bytes(d)


def _header_flip(data: bytes, rng: random.Random) -> bytes:
    """Flip ~2 % of the bytes after the signature, in the first KiB: where headers say which
    codec, how many channels, what rate."""
    d = bytearray(data)
    for i in range(8, min(len(d), 1024)):
        if rng.random() < 0.02:
            d[i] ^= rng.randint(1, 255)
    return bytes(d)


def _stride(data: bytes, rng: random.Random) -> bytes:
    """Issue 11's recipe: every 97th byte overwritten from a third of the way to the end."""
    d = bytearray(data)
    for i in range(len(d) // 3, len(d) - 100, 97):
        d[i] = rng.randrange(256)
    return bytes(d)


def build_corpus(folder: Path) -> list[Mutant]:
    """The clean sources and their mutants in `folder`, the same for the same PyAV version."""
    folder.mkdir(parents=True, exist_ok=True)
    speech = gen.load_speech(SHARED_MEDIA / "jfk.flac", CLIP_SECONDS)
    clean: dict[str, bytes] = {}
    for name, spec in SOURCES.items():
        path = folder / f"clean.{name}"
        if spec is None:
            gen.write_wav(path, speech)
        else:
            gen.write_audio(path, speech, spec[0], rate=spec[1])
        clean[name] = path.read_bytes()
        path.unlink()   # only mutants stay in the folder
    rng = random.Random(SEED)
    mutants = []
    for name, data in clean.items():
        for kind, count in KINDS.items():
            for n in range(count):
                if kind == "flip":
                    out = _flip(data, rng)
                elif kind == "header_flip":
                    out = _header_flip(data, rng)
                elif kind == "truncate":
                    out = data[:rng.randrange(1, len(data))]
                elif kind == "zero_header":
                    k = rng.randint(4, 512)
                    out = bytes(k) + data[k:]
                elif kind == "splice":
                    other = clean[rng.choice([s for s in SOURCES if s != name])]
                    out = data[:len(data) // 2] + other[len(other) // 2:]
                else:
                    out = _stride(data, random.Random(rng.random()))
                path = folder / f"{kind}-{n}-{name}.{name}"
                path.write_bytes(out)
                mutants.append(Mutant(path, name, kind))
    # The file of issue 11 itself: an MP4 with a small video stream, garbled with seed 1.
    talk = gen.mux_with_video(SHARED_MEDIA / "jfk.flac", folder / "talk.mp4", seconds=CLIP_SECONDS)
    garbled = folder / "stride-issue11-mp4v.mp4"
    garbled.write_bytes(_stride(talk.read_bytes(), random.Random(1)))
    talk.unlink()
    mutants.append(Mutant(garbled, "mp4v", "stride"))
    return mutants


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Mutant]:
    t0 = time.perf_counter()
    mutants = build_corpus(tmp_path_factory.mktemp("mutants"))
    print(f"\n{len(mutants)} mutants made in {time.perf_counter() - t0:.2f}s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(
              (m.source, m.kind) for m in mutants).items())))
    return mutants


def _outcome(path: Path) -> tuple[str, str, str]:
    """(audio|failed|skipped, reason or seconds, message): the daemon's probe then decode."""
    try:
        stages.probe(path)
        audio = stages.decode(path)
    except StageError as e:
        return "failed", e.reason, e.message
    except SkipJob as s:
        return "skipped", s.reason, s.message
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert len(audio) > 0 and float(np.abs(audio).max()) <= 1.0
    return "audio", f"{len(audio) / stages.SAMPLE_RATE:.3f}", ""


def _summary(counts: collections.Counter) -> str:
    return "\n".join(f"  {k:28} {v}" for k, v in sorted(counts.items()))


def test_every_mutant_decodes_or_fails_with_a_named_permanent_reason(corpus):
    assert len(corpus) >= 40
    by_reason: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for m in corpus:
        status, what, message = _outcome(m.path)
        if status == "audio":
            # Decoded (maybe a few samples of a cut file), never more than two clips' worth
            # (a splice of two files).
            assert float(what) <= 2 * CLIP_SECONDS + 1, (m, what)
            by_reason["audio"] += 1
        else:
            allowed = MEDIA_FAILURES if status == "failed" else MEDIA_SKIPS
            assert what in allowed, (m, status, what, message)
            if status == "failed":
                assert not FAILURE_REASONS[what][1], f"{what} would be retried: {m}"
            # One short line naming the file, no traceback, no repr of a C call.
            assert m.path.name in message and "\n" not in message and len(message) < 300, message
            by_reason[f"{status}/{what}"] += 1
        by_kind[f"{m.source}/{m.kind} -> {what if status != 'audio' else 'audio'}"] += 1
    elapsed = time.perf_counter() - t0
    print(f"\nprobe+decode of {len(corpus)} mutants in {elapsed:.2f}s\n{_summary(by_reason)}"
          f"\n{_summary(by_kind)}")
    # The corpus exercises both sides: some damage is survivable, some is not.
    assert by_reason["audio"] >= 5 and sum(by_reason.values()) - by_reason["audio"] >= 5


@pytest.mark.slow
def test_a_daemon_fed_the_whole_corpus_names_every_failure_and_stays_up(daemon_factory, corpus,
                                                                         tmp_path):
    d = daemon_factory({"max_attempts": 3, "output_formats": ["srt"]}).start()
    staging = tmp_path / "staging"
    staging.mkdir()
    for m in corpus:
        shutil.copy(m.path, staging / m.path.name)
    t0 = time.monotonic()
    for m in corpus:   # renamed in, like finished downloads
        os.rename(staging / m.path.name, d.watch / m.path.name)
    jobs = d.wait_jobs(len(corpus), timeout=300)
    elapsed = time.monotonic() - t0
    assert sorted(Path(j["path"]).name for j in jobs) == sorted(m.path.name for m in corpus)

    counts: collections.Counter = collections.Counter()
    for j in jobs:
        name = Path(j["path"]).name
        counts[f"{j['status']}/{j['reason'] or '-'}"] += 1
        if j["status"] == "succeeded":
            outputs = json.loads(j["outputs"])
            assert outputs and all(Path(o).is_file() for o in outputs), j
        elif j["status"] == "failed":
            assert j["reason"] in MEDIA_FAILURES, (name, j["reason"], j["error_message"])
            assert j["attempts"] == 1, f"{name}: {j['reason']} was retried"
            assert name in j["error_message"] and "\n" not in j["error_message"]
        else:
            assert j["status"] == "skipped" and j["reason"] in MEDIA_SKIPS, (name, j["reason"])
    log = d.log()
    print(f"\n{len(jobs)} mutants through the daemon in {elapsed:.1f}s\n{_summary(counts)}")
    assert "internal_error" not in log and "Traceback" not in log, log[-4000:]
    assert d.proc.poll() is None and d.get("/healthz")[0] == 200
    # The exporter counted the same: every failure under its named reason, none as a bug.
    failures = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in d.metrics().splitlines()
                if line.startswith("scribewatch_job_failures_total{")}
    assert not any(n for series, n in failures.items() if 'reason="internal_error"' in series)
    assert sum(failures.values()) == sum(j["status"] == "failed" for j in jobs)
    assert d.stop() == 0
