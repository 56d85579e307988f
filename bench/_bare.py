"""The "usual way": bare sequential faster-whisper, run as its own process by bench.throughput.

Reads one JSON job on stdin: {"model", "cpu_threads", "beam_size", "warmup", "files",
"build_on"}. Loads the model, warms it on one file, prints `ready`, waits for a `go` line, then
transcribes the files one after another (`WhisperModel.transcribe`: decode included, word
timestamps, VAD, no conditioning on previous text) and prints one JSON line with the wall time,
per-file times and texts, and its own peak RSS (VmHWM).

`build_on` is "main" (the usual way: a plain script builds the model where it runs) or "thread"
(the model is constructed on a short-lived thread, as the daemon does, and used on the main
thread): the diagnostic that shows how much of the daemon's lead is which thread built the
model (docs/performance.md, "Which thread builds the model").
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    job = json.loads(sys.stdin.readline())
    from faster_whisper import WhisperModel

    box: dict = {}

    def build():
        box["model"] = WhisperModel(job["model"], device="cpu", compute_type="int8",
                                    cpu_threads=job["cpu_threads"])

    t0 = time.perf_counter()
    if job.get("build_on", "main") == "thread":
        builder = threading.Thread(target=build, name="model-build")
        builder.start()
        builder.join()
    else:
        build()
    model = box["model"]
    load_seconds = time.perf_counter() - t0
    kwargs = dict(beam_size=job["beam_size"], word_timestamps=True, vad_filter=True,
                  condition_on_previous_text=False)

    def run(path: str) -> tuple[str, float]:
        segments, info = model.transcribe(path, **kwargs)
        text = " ".join(s.text.strip() for s in segments)   # the work happens while iterating
        return text, info.duration

    run(job["warmup"])
    print("ready", flush=True)
    sys.stdin.readline()   # "go"
    files = []
    start = time.time()
    for path in job["files"]:
        t = time.perf_counter()
        text, duration = run(path)
        files.append({"path": path, "seconds": time.perf_counter() - t,
                      "audio_seconds": duration, "text": text})
    end = time.time()
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"start": start, "end": end, "wall_seconds": end - start,
                      "load_seconds": load_seconds, "peak_rss_bytes": hwm, "files": files,
                      "build_on": job.get("build_on", "main"),
                      "gomp_spincount": os.environ.get("GOMP_SPINCOUNT")}),
          flush=True)


if __name__ == "__main__":
    main()
