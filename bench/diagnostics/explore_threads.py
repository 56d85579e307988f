"""Does it matter which thread loads the model? (a diagnostic, not one of the six benchmarks)

The daemon loads the Whisper model on its `model-load` thread and transcribes on `worker-0`;
a plain script does both on the main thread. This times the same short transcription many
times in each arrangement, each in a fresh process, alone and next to a CPU burner (one
`while True` process: what a colleague's test run does to this 2-core machine), and reports
per-call times (median, p95, max) and CPU seconds per call. Same model, threads, beam, VAD.

    python -m bench.diagnostics.explore_threads [--calls 30] [--clip jfk|jfk-license]
                                    [--only ARRANGEMENT ...] [--env KEY=VALUE ...] [--nice N]

`--nice N` lowers the loading thread's priority by N (the daemon's `transcribe_nice`), `--idle`
puts it in the SCHED_IDLE class; the CPU burner keeps the default priority. `--env` sets
variables for the timed processes (e.g. `GOMP_SPINCOUNT=10000`: how long libgomp's
idle threads spin before they sleep, read once when the library loads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from bench import common, media

ARRANGEMENTS = {
    "load_main_use_main": ("main", "main"),       # a plain script
    "load_thread_use_thread": ("thread", "thread"),   # the daemon (model-load, worker-0)
    "load_thread_use_main": ("thread", "main"),
    "load_main_use_thread": ("main", "thread"),
}


def child(load_on: str, use_on: str, calls: int, clip: str, nice: int = 0,
          idle: bool = False) -> None:
    from faster_whisper import WhisperModel

    from scribewatch.pipeline.model import enter_idle_class, lower_thread_priority

    audio = media.clip("jfk") if clip == "jfk" else media.concat(["jfk", "license"])[0]
    box = {}

    def load():
        if nice:
            lower_thread_priority(nice)   # as the daemon's model-build thread does
        if idle:
            enter_idle_class()            # as the daemon does with transcribe_idle_class
        box["m"] = WhisperModel(common.model_dir(), device="cpu", compute_type="int8",
                                cpu_threads=2)

    def use():
        m = box["m"]
        out = []
        for _ in range(calls + 1):
            t, c = time.perf_counter(), time.process_time()
            segments, _ = m.transcribe(audio, beam_size=5, word_timestamps=True,
                                       vad_filter=True, condition_on_previous_text=False)
            text = " ".join(s.text for s in segments)
            out.append((time.perf_counter() - t, time.process_time() - c, len(text)))
        box["out"] = out[1:]   # the first call warms up

    for fn, where in ((load, load_on), (use, use_on)):
        if where == "thread":
            t = threading.Thread(target=fn)
            t.start()
            t.join()
        else:
            fn()
    print(json.dumps(box["out"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--clip", default="jfk", choices=("jfk", "jfk-license"))
    p.add_argument("--only", action="append", choices=sorted(ARRANGEMENTS),
                   help="time only these arrangements")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the timed processes")
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--idle", action="store_true",
                   help="the loading thread at SCHED_IDLE (CTranslate2's threads inherit it)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child, args.calls, args.clip, args.nice, args.idle)
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    env = dict(os.environ, PYTHONPATH=str(common.REPO), **extra_env)
    arrangements = {k: v for k, v in ARRANGEMENTS.items() if not args.only or k in args.only}
    results = {}
    for load_name in ("alone", "with_cpu_burner"):
        burner = None
        if load_name == "with_cpu_burner":
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for name, (load_on, use_on) in arrangements.items():
                out = subprocess.run(
                    [sys.executable, "-m", "bench.diagnostics.explore_threads",
                     "--calls", str(args.calls),
                     "--clip", args.clip, "--nice", str(args.nice), "--child", load_on, use_on]
                    + (["--idle"] if args.idle else []),
                    env=env, cwd=common.REPO, capture_output=True, text=True, check=True)
                calls = json.loads(out.stdout.strip().splitlines()[-1])
                wall = [c[0] for c in calls]
                results.setdefault(load_name, {})[name] = {
                    "median_s": round(statistics.median(wall), 3),
                    "p95_s": round(common.quantile(wall, 0.95), 3),
                    "max_s": round(max(wall), 3),
                    "cpu_s_per_call": round(statistics.fmean(c[1] for c in calls), 3),
                    "text_lengths": sorted({c[2] for c in calls})}
                common.log(f"{load_name} {name}: {results[load_name][name]}")
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    print(json.dumps({"machine": common.machine_info(), "clip": args.clip,
                      "calls": args.calls, "env": extra_env, "nice": args.nice, "idle": args.idle,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
