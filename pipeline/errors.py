"""The pipeline's own exceptions for failed and skipped jobs. Their reason codes, a public
contract, are declared in `contract.py` (with the stages and outcomes)."""

from __future__ import annotations

from .contract import FAILURE_REASONS, SKIP_REASONS


class StageError(Exception):
    """A stage failed for a known reason. `reason` must be a key of FAILURE_REASONS."""

    def __init__(self, reason: str, message: str, stage: str | None = None):
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.stage = stage or FAILURE_REASONS[reason][0]
        self.message = message

    @property
    def transient(self) -> bool:
        return FAILURE_REASONS[self.reason][1]


class SkipJob(Exception):
    """The file needs no subtitle from us. `reason` must be one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


class GpuOutOfMemory(Exception):
    """CUDA ran out of memory during a job. Not the file's fault: the daemon shrinks what it
    runs on that GPU and queues the job again (`waiting_for_vram`), never failing it."""


# CTranslate2's CUDA_CHECK throws std::runtime_error("CUDA failed with error " +
# cudaGetErrorString(code)) (include/ctranslate2/cuda/utils.h): "CUDA failed with error out of
# memory"; its cuBLAS check says "cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED".
_CUDA_OOM_MARKERS = ("CUDA failed with error out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_cuda_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _CUDA_OOM_MARKERS)
