"""Which batched-inference settings keep quality? (a diagnostic, not one of the six benchmarks)

On the throughput corpus's long files, in this process, with the model loaded and run the way
the daemon does it (loaded on one thread, used on another): sequential `WhisperModel.transcribe`
against `BatchedInferencePipeline` (batch 8) with its defaults and with shorter chunks, and with
timestamps on. For each: seconds, speed-up over sequential, WER against the reference, and the
longest run of reference words missing from the output (batched inference decodes each VAD
chunk once: when the decoder stops early, the rest of the chunk is lost).

    python -m bench.diagnostics.explore_batching [--files long-8min.mp3,long-6min.mp3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import difflib
import json
import threading
import time
from pathlib import Path

from bench import common
from tests.harness.quality import word_error_rate

VARIANTS = {
    "sequential": None,
    "batched_default": {},
    "batched_timestamps": {"without_timestamps": False},
    "batched_chunk20": {"chunk_length": 20},
    "batched_chunk15": {"chunk_length": 15},
    "batched_chunk10": {"chunk_length": 10},
}


def longest_deletion(reference: str, hypothesis: str) -> int:
    from scribewatch.pipeline.guards import normalize_text

    r, h = normalize_text(reference).split(), normalize_text(hypothesis).split()
    ops = difflib.SequenceMatcher(a=r, b=h, autojunk=False).get_opcodes()
    return max([a1 - a0 for op, a0, a1, b0, b1 in ops if op in ("delete", "replace")
                and (a1 - a0) - (b1 - b0) > 0] or [0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="long-8min.mp3,long-6min.mp3,long-4min.mp3")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from scribewatch.pipeline.stages import decode

    manifest = json.loads((common.WORK / "throughput" / "media" / "manifest.json").read_text())
    by_name = {f["name"]: f for f in manifest["files"]}
    box = {}
    t = threading.Thread(target=lambda: box.update(model=WhisperModel(
        common.model_dir(), device="cpu", compute_type="int8", cpu_threads=2)))
    t.start()
    t.join()
    model = box["model"]
    batched = BatchedInferencePipeline(model=model)
    kwargs = dict(beam_size=5, word_timestamps=True, vad_filter=True,
                  condition_on_previous_text=False)
    results = {}

    def run(audio, variant):
        extra = VARIANTS[variant]
        if extra is None:
            segments, _ = model.transcribe(audio, **kwargs)
        else:
            segments, _ = batched.transcribe(audio, batch_size=8, **kwargs, **extra)
        return " ".join(s.text.strip() for s in segments)

    def work():
        for name in args.files.split(","):
            f = by_name[name]
            audio = decode(Path(f["path"]))
            run(audio[: 16000 * 30], "sequential")   # warm
            for variant in args.variants.split(","):
                times, text = [], ""
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    text = run(audio, variant)
                    times.append(time.perf_counter() - t0)
                results.setdefault(name, {})[variant] = {
                    "seconds": round(min(times), 2),
                    "wer_percent": round(100 * word_error_rate(f["reference"], text), 2),
                    "longest_missing_run_words": longest_deletion(f["reference"], text)}
                common.log(f"{name} {variant}: {results[name][variant]}")
            seq = results[name]["sequential"]["seconds"]
            for v in results[name].values():
                v["speedup_vs_sequential"] = round(seq / v["seconds"], 3)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    print(json.dumps({"machine": common.machine_info(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
