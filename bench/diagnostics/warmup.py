"""Does warming the model at load take the first job's extra cost away? (a diagnostic)

Each round starts a fresh process (what a first call pays is paid once per process), builds the
model through ModelManager (CPU, int8, 2 threads, as the daemon) with the warm-up on or off,
then times the first real transcription of jfk.flac and a second one (the steady state), beam 5,
word timestamps, VAD, as the daemon transcribes. Rounds alternate warm/cold and swap order each
round, so drift from other work on this shared machine hits both.

    python -m bench.diagnostics.warmup [--rounds 6] [--device cpu]

Writes bench/results/diagnostics/warmup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench import common

OUT = common.RESULTS / "diagnostics" / "warmup.json"


def child(warm: bool, device: str) -> None:
    from scribewatch.pipeline.model import ModelManager

    audio = str(common.REPO.parent / "shared" / "media" / "jfk.flac")
    compute = "int8" if device == "cpu" else "float16"
    m = ModelManager("tiny.en", device=device, compute_type=compute, cpu_threads=2, warmup=warm)
    t0 = time.perf_counter()
    model = m.load()
    load_total = time.perf_counter() - t0
    calls = []
    for _ in range(2):
        t = time.perf_counter()
        segments, _ = model.transcribe(audio, beam_size=5, word_timestamps=True, vad_filter=True,
                                       condition_on_previous_text=False)
        text = " ".join(s.text.strip() for s in segments)
        calls.append(time.perf_counter() - t)
    print(json.dumps({"warm": warm, "load_seconds": m.load_seconds,
                      "warmup_seconds": m.warmup_seconds, "load_total_seconds": load_total,
                      "first_seconds": calls[0], "second_seconds": calls[1], "text": text}))


def run_round(warm: bool, device: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.diagnostics.warmup", "--child",
                          "warm" if warm else "cold", "--device", device],
                         cwd=common.REPO, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", choices=["warm", "cold"])
    args = p.parse_args()
    if args.child:
        return child(args.child == "warm", args.device)
    runs = {"warm": [], "cold": []}
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for warm in order:
            result = run_round(warm, args.device)
            runs["warm" if warm else "cold"].append(result)
            common.log(f"round {r + 1} {'warm' if warm else 'cold'}: first "
                       f"{result['first_seconds']:.3f}s second {result['second_seconds']:.3f}s")

    def med(side, key):
        values = [x[key] for x in runs[side] if x[key] is not None]
        return round(statistics.median(values), 3) if values else None

    measured = {side: {k: med(side, k) for k in ("load_seconds", "warmup_seconds",
                                                  "load_total_seconds", "first_seconds",
                                                  "second_seconds")} for side in runs}
    measured["first_call_extra_seconds"] = {
        side: round(measured[side]["first_seconds"] - measured[side]["second_seconds"], 3)
        for side in runs}
    doc = {"name": "warmup", "machine": common.machine_info(), "code": common.code_version(),
           "config": {"rounds": args.rounds, "device": args.device, "model": "tiny.en",
                      "clip": "jfk.flac"},
           "measured": measured, "runs": runs,
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
