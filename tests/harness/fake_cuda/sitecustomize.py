"""CUDA faked at the model boundary, for a real daemon on a machine without a GPU.

Put this folder first on PYTHONPATH (tests.harness.daemon.Daemon(fake_cuda=True) does, together
with the fake NVML): Python imports `sitecustomize` at start, and this one

* makes `ctranslate2.get_cuda_device_count()` return FAKE_CUDA_DEVICES (default 1), so
  `device: auto` finds "a GPU";
* builds a `WhisperModel(device="cuda", device_index=N)` as the same real model on the CPU
  (int8: CTranslate2 has no float16 on CPU), and appends one line `load N <num_workers>` to
  FAKE_CUDA_LOG, so a test sees which GPUs got a model;
* raises CTranslate2's CUDA out-of-memory error ("CUDA failed with error out of memory",
  include/ctranslate2/cuda/utils.h) from a "cuda" model's transcribe call while the file
  FAKE_CUDA_OOM holds a number above 0 (decremented at each one; `transcribe` calls with
  `word_timestamps` only: real jobs, not the warm-up), and appends `oom N` to FAKE_CUDA_LOG.

Everything else (the model, the audio, the decoding) is real.
"""

from __future__ import annotations

import fcntl
import os


def _log(line: str) -> None:
    path = os.environ.get("FAKE_CUDA_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _take_oom() -> bool:
    path = os.environ.get("FAKE_CUDA_OOM")
    if not path or not os.path.exists(path):
        return False
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        left = int(f.read().strip() or 0)
        if left <= 0:
            return False
        f.seek(0), f.truncate(), f.write(str(left - 1))
    return True


def _install() -> None:
    import ctranslate2
    import faster_whisper

    devices = int(os.environ.get("FAKE_CUDA_DEVICES", "1"))
    ctranslate2.get_cuda_device_count = lambda: devices
    model_cls = faster_whisper.WhisperModel
    batched_cls = faster_whisper.BatchedInferencePipeline
    original_init, original_transcribe = model_cls.__init__, model_cls.transcribe
    batched_transcribe = batched_cls.transcribe

    def init(self, model_size_or_path, device="auto", device_index=0, compute_type="default",
             cpu_threads=0, num_workers=1, **kw):
        self._fake_cuda_index = device_index if device == "cuda" else None
        if device == "cuda":
            if device_index >= devices:
                raise RuntimeError(f"CUDA failed with error invalid device ordinal {device_index}")
            _log(f"load {device_index} {num_workers}")
            device, device_index, compute_type = "cpu", 0, "int8"
        original_init(self, model_size_or_path, device=device, device_index=device_index,
                      compute_type=compute_type, cpu_threads=cpu_threads,
                      num_workers=num_workers, **kw)

    def out_of_memory(model, kwargs) -> None:
        index = getattr(model, "_fake_cuda_index", None)
        if index is not None and kwargs.get("word_timestamps") and _take_oom():
            _log(f"oom {index}")
            raise RuntimeError("CUDA failed with error out of memory")

    def transcribe(self, audio, *args, **kwargs):
        out_of_memory(self, kwargs)
        return original_transcribe(self, audio, *args, **kwargs)

    def transcribe_batched(self, audio, *args, **kwargs):
        out_of_memory(self.model, kwargs)
        return batched_transcribe(self, audio, *args, **kwargs)

    model_cls.__init__ = init
    model_cls.transcribe = transcribe
    batched_cls.transcribe = transcribe_batched


if os.environ.get("FAKE_CUDA", "") == "1":
    _install()
