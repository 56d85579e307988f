"""GPU throughput: the daemon with its defaults against bare faster-whisper, sequential and batched
(BatchedInferencePipeline), on the same WAV corpus, in alternating rounds (bench/throughput.py's
method), with WER, subtitle readability and GPU utilisation (NVML sampled during the daemon's
run, and the daemon's own /metrics `scribewatch_gpu_utilization_ratio`).

    python -m bench.gpu [--device cuda|cpu] [--quick] [--max-seconds 330] [--out PATH]

Bounded: every step checks the --max-seconds budget and the rounds stop when it runs out.
Runs on a machine with only the project's wheels: the corpus is WAV written with the stdlib
`wave` module from 16 kHz sources decoded beforehand (`bench/work/gpu/sources/*.wav`, made here
with PyAV when it is importable; carry that folder to a machine without it). The daemon's
decode stage still needs PyAV: without it the daemon side is skipped and says so.

ratio = bare sequential wall / daemon wall (same audio).  Targets: ratio >= 4, WER within
1 point of bare sequential, GPU utilisation >= 0.6 while files are queued (cuda only).
Output: bench/results/gpu.json for a full cuda run, else bench/work/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np

from bench import common
from bench.common import log
from bench.media import LICENSE_PARTS
from tests.harness import JFK_TEXT, SHARED_MEDIA

NAME = "gpu"
RATE = 16000
WORK = common.WORK / NAME
SOURCES = WORK / "sources"
TARGETS = {"ratio_min": 4.0, "wer_delta_max_points": 1.0, "gpu_utilization_min": 0.6,
           "readability_problems_max": 0}
BATCH = 16   # the planner's choice on a large GPU (pipeline/gpu/plan.py MAX_BATCH_SIZE)


# -- corpus: WAV only -------------------------------------------------------------------------
def write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE), path
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768




def sources() -> dict[str, tuple[np.ndarray, str]]:
    """name -> (16 kHz mono speech, its words), from SOURCES: WAVs decoded once, with PyAV,
    wherever it is installed (then carried to a machine without it)."""
    jfk, lic = SOURCES / "jfk.wav", SOURCES / "license.wav"
    if not (jfk.exists() and lic.exists()):
        from scribewatch.pipeline.media.reader import decode  # PyAV 18 and 19 (not decode_audio)

        SOURCES.mkdir(parents=True, exist_ok=True)
        write_wav(jfk, decode(SHARED_MEDIA / "jfk.flac"))
        full = decode(SHARED_MEDIA / "multilingual.mp3")
        write_wav(lic, full[: int(30.5 * RATE)])
    license_audio = read_wav(lic)
    out = {"jfk": (read_wav(jfk), JFK_TEXT)}
    for name, (a, b, text) in LICENSE_PARTS.items():
        out[name] = (license_audio[int(a * RATE): int(b * RATE)], text)
    return out


def make_corpus(quick: bool) -> list[dict]:
    """Mixed lengths (11 s to 10 min) of shuffled speech pieces with 0.75-s quiet gaps."""
    pieces = sources()
    gap = np.random.default_rng(1).normal(0, 0.002, int(0.75 * RATE)).astype(np.float32)
    lengths = [11, 45, 150] if quick else [11, 45, 150, 300, 11, 90, 600, 45, 240, 420, 11, 150]
    folder = WORK / ("corpus-quick" if quick else "corpus")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(7)
    corpus = []
    for n, seconds in enumerate(lengths):
        names = ["jfk"] if seconds <= 11 else []
        total = 0.0
        while total < seconds - 6:
            deck = list(pieces)
            rng.shuffle(deck)
            if names and deck[0] == names[-1]:
                deck.append(deck.pop(0))
            for k in deck:
                if total >= seconds - 6:
                    break
                names.append(k)
                total += len(pieces[k][0]) / RATE + 0.75
        audio = np.concatenate([np.concatenate([pieces[k][0], gap]) for k in names])
        path = folder / f"f{n:02d}-{seconds}s.wav"
        write_wav(path, audio)
        corpus.append({"path": path, "seconds": len(audio) / RATE,
                       "reference": " ".join(pieces[k][1] for k in names)})
    return corpus


# -- the bare sides, each in a fresh process ---------------------------------------------------
def bare_child(args) -> None:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    compute = "float16" if args.device == "cuda" else "int8"
    model = WhisperModel(common.model_dir(), device=args.device, compute_type=compute,
                         cpu_threads=2)
    pipe = BatchedInferencePipeline(model=model) if args.batch else model
    kw = dict(beam_size=5, word_timestamps=True, vad_filter=True, condition_on_previous_text=False)
    if args.batch:
        kw["batch_size"] = args.batch
    files = [Path(p) for p in args.files]

    def run(path):
        segments, _ = pipe.transcribe(read_wav(path), **kw)
        return " ".join(s.text.strip() for s in segments)
    run(files[0])   # warm (and JIT) before the clock starts, as the daemon warms at load
    started = time.perf_counter()
    texts = [run(p) for p in files]
    print(json.dumps({"wall_seconds": time.perf_counter() - started, "texts": texts}))


def run_bare(corpus, device: str, batch: int, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "bench.gpu", "--child", "--device", device, "--batch", str(batch),
           "--files", *[str(f["path"]) for f in corpus]]
    out = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the daemon side ---------------------------------------------------------------------------
def gpu_sampler(stop: threading.Event, out: list) -> None:
    """NVML utilisation of GPU 0 every 0.2 s (nothing without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:
        return
    while not stop.wait(0.2):
        try:
            out.append((time.time(), pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100))
        except Exception:
            return


def scrape_util(url: str) -> float | None:
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("scribewatch_gpu_utilization_ratio")]
    return max(values) if values else None


def run_daemon(corpus, device: str, deadline: float) -> dict:
    folder = WORK / "daemon"
    shutil.rmtree(folder, ignore_errors=True)
    inbox, staging = folder / "inbox", folder / "staging"
    inbox.mkdir(parents=True), staging.mkdir()
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    config = {"watch_dirs": [str(inbox)], "db": str(folder / "jobs.db"),
              "model": common.model_dir(),
              "listen": f"127.0.0.1:{port}", "device": device, "cpu_threads": 2}
    (folder / "scribewatch.yaml").write_text(json.dumps(config))   # JSON is YAML
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(common.REPO), os.environ.get("PYTHONPATH", "")]))
    logf = open(folder / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "scribewatch", "run", "--config",
                             str(folder / "scribewatch.yaml")], cwd=folder, env=env,
                            stdout=logf, stderr=subprocess.STDOUT)
    stop, nvml_samples, metric_samples = threading.Event(), [], []

    def srt(path: Path) -> Path:
        return inbox / (path.stem + ".en.srt")

    def wait_srts(paths, what):
        def done():
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: "
                                   f"{(folder / 'daemon.log').read_text()[-2000:]}")
            return all(srt(p).exists() for p in paths)
        common.wait_for(done, max(1.0, deadline - time.time()), 0.1, what)
    try:
        common.wait_for(lambda: scrape_util(url) is not None or _up(url), 120, 0.1, "daemon up")
        warm = staging / "warm.wav"
        shutil.copy(corpus[0]["path"], warm)
        os.rename(warm, inbox / "warm.wav")
        wait_srts([inbox / "warm.wav"], "warm-up job")
        names = []
        for f in corpus:
            shutil.copy(f["path"], staging / f["path"].name)
        sampler = threading.Thread(target=gpu_sampler, args=(stop, nvml_samples), daemon=True)
        sampler.start()
        first_drop = time.time()
        for f in corpus:   # renamed in: each appears complete, as a finished download
            os.rename(staging / f["path"].name, inbox / f["path"].name)
            names.append(inbox / f["path"].name)
        pending = list(names)
        while pending:
            metric_samples.append(scrape_util(url))
            wait_srts([], "")   # raises if the daemon died
            pending = [p for p in pending if not srt(p).exists()]
            if time.time() > deadline:
                raise TimeoutError(f"budget spent with {len(pending)} files left")
            time.sleep(0.5)
        last = max(srt(p).stat().st_mtime for p in names)
        stop.set()
        checks = [common.srt_check(srt(p)) for p in names]
        window = [u for t, u in nvml_samples if first_drop <= t <= last]
        return {"wall_seconds": last - first_drop, "texts": [c[0] for c in checks],
                "readability_problems": sum(len(c[1]) for c in checks),
                "nvml_utilization_mean": statistics.fmean(window) if window else None,
                "metrics_utilization_mean": _mean([m for m in metric_samples if m is not None])}
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()


def _up(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/readyz", timeout=2).status == 200
    except OSError:
        return False


def _mean(values):
    return round(statistics.fmean(values), 3) if values else None


def wer_points(corpus, texts) -> float:
    ref = " ".join(f["reference"] for f in corpus)
    return round(100 * common.wer(ref, " ".join(texts)), 2)


# -- main --------------------------------------------------------------------------------------
def machine(device: str) -> dict:
    info = common.machine_info()
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        info["gpu"] = {"name": pynvml.nvmlDeviceGetName(h),
                       "driver": pynvml.nvmlSystemGetDriverVersion(),
                       "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}",
                       "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total)}
    except Exception as e:
        info["gpu"] = None if device == "cpu" else f"NVML unavailable: {e}"
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--max-seconds", type=float, default=330)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return bare_child(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    deadline = started + args.max_seconds - 10   # room to write the result
    corpus = make_corpus(args.quick)
    audio = sum(f["seconds"] for f in corpus)
    log(f"corpus: {len(corpus)} files, {audio / 60:.1f} min")
    try:
        import av  # noqa: F401  (the daemon's decode stage)
        daemon_ok, daemon_note = True, None
    except ImportError:
        daemon_ok, daemon_note = (False,
                                  "PyAV not importable: the daemon cannot decode; side skipped")
    sides = (["daemon", "bare_sequential", "bare_batched"] if daemon_ok
             else ["bare_sequential", "bare_batched"])
    runs: dict[str, list] = {s: [] for s in sides}
    notes = [daemon_note] if daemon_note else []
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            left = deadline - time.time()
            if left < 15:
                notes.append(f"budget spent before round {r + 1} {side}")
                break
            try:
                if side == "daemon":
                    res = run_daemon(corpus, args.device, deadline)
                else:
                    res = run_bare(corpus, args.device, BATCH if side == "bare_batched" else 0,
                                   left)
            except (subprocess.TimeoutExpired, TimeoutError, RuntimeError) as e:
                notes.append(f"round {r + 1} {side}: {type(e).__name__}: {str(e)[-300:]}")
                continue
            res["wer_points"] = wer_points(corpus, res.pop("texts"))
            res["round"] = r + 1
            runs[side].append(res)
            log(f"round {r + 1} {side}: {audio / res['wall_seconds']:.1f} audio s/s, "
                f"WER {res['wer_points']} %")
    measured = {"audio_seconds": round(audio, 1), "files": len(corpus), "runs": runs}
    for side, rs in runs.items():
        if rs:
            measured[f"{side}_audio_s_per_s"] = round(
                audio / statistics.median(x["wall_seconds"] for x in rs), 2)
            measured[f"{side}_wer_points"] = statistics.median(x["wer_points"] for x in rs)
    base, daemon = runs["bare_sequential"], runs.get("daemon", [])
    # Pair each daemon run with the bare run of its round, as throughput.py does.
    paired = [b["wall_seconds"] / d["wall_seconds"]
              for d in daemon for b in base if b["round"] == d["round"]]
    measured["ratio"] = round(statistics.median(paired), 3) if paired else None
    measured["batched_ratio"] = (round(measured["bare_batched_audio_s_per_s"]
                                       / measured["bare_sequential_audio_s_per_s"], 3)
                                 if runs["bare_batched"] and base else None)
    measured["wer_delta_points"] = (round(measured["daemon_wer_points"]
                                          - measured["bare_sequential_wer_points"], 2)
                                    if daemon and base else None)
    measured["gpu_utilization_mean"] = _mean([d["nvml_utilization_mean"] for d in daemon
                                              if d["nvml_utilization_mean"] is not None])
    measured["gpu_utilization_metrics_mean"] = _mean([d["metrics_utilization_mean"] for d in daemon
                                                      if d["metrics_utilization_mean"] is not None])
    measured["readability_problems"] = max((d["readability_problems"] for d in daemon),
                                           default=None)
    checks = {"ratio": measured["ratio"] is not None and measured["ratio"] >= TARGETS["ratio_min"],
              "wer": measured["wer_delta_points"] is not None
              and measured["wer_delta_points"] <= TARGETS["wer_delta_max_points"],
              "readability": measured["readability_problems"] == 0}
    if args.device == "cuda":
        checks["gpu_utilization"] = ((measured["gpu_utilization_mean"] or 0)
                                     >= TARGETS["gpu_utilization_min"])
    doc = {"name": NAME, "quick": args.quick, "device": args.device,
           "machine": machine(args.device),
           "code": common.code_version(), "measured": measured, "targets": TARGETS,
           "checks": checks,
           "met": all(checks.values()), "notes": notes,
           "config": {"rounds": args.rounds, "max_seconds": args.max_seconds, "batch": BATCH,
                      "model": "tiny.en", "beam_size": 5},
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "duration_seconds": round(time.time() - started, 1)}
    full = args.device == "cuda" and not args.quick
    out = (Path(args.out) if args.out
           else (common.RESULTS if full else common.QUICK_RESULTS) / "gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in measured.items() if k != "runs"}))


if __name__ == "__main__":
    main()
