"""How much GPU memory a Whisper model takes under CTranslate2: the one table the GPU planner reads.

Where the figures come from (none of them is measured on this project's machines yet except
where said; `bench/gpu.py` records `nvidia-smi`-equivalent NVML figures on a device run and is
where they should be corrected):

* Weights: parameter count × bytes per weight (2 for float16, 1 for the int8 types). Parameter
  counts are OpenAI's (tiny 39 M, base 74 M, small 244 M, medium 769 M, large-v3 1550 M) and
  Hugging Face's model card for distil-large-v3 (756 M). CTranslate2 shares the weights between
  the workers of one device ("When the workers are running on the same device, the model weights
  are shared to save on memory", CTranslate2 docs, docs/parallel.md), so they count once per GPU.
* Per worker and per batch item: faster-whisper's README benchmark (large-v2 on an RTX 3070 Ti,
  beam 5, 13 min of audio): float16 4,755 MB sequential and 6,090 MB at batch 8; int8 3,091 MB.
  Taking a CUDA context + cuBLAS workspace of ~500 MiB and the weights off gives ~1,300 MiB per
  sequential worker and ~190 MiB per extra batch item for large; smaller models are ESTIMATES,
  scaled by d_model × layers (the activations and the beam's key/value cache grow with both).
* On an H200 (NOTES.md) tiny.en float16 with 4 workers × batch 16 ran: consistent with the table
  (≈ 0.5 + 0.08 + 4 × (0.05 + 16 × 0.02) GiB ≈ 2 GiB), but peak memory was not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 ** 2
GIB = 1024 ** 3

# The CUDA context, cuBLAS workspace and CTranslate2's allocator slack: once per GPU (per process).
CONTEXT_BYTES = 500 * MIB

BYTES_PER_WEIGHT = {"float16": 2, "bfloat16": 2, "float32": 4,
                    "int8_float16": 1, "int8_bfloat16": 1, "int8_float32": 1, "int8": 1}


@dataclass(frozen=True)
class ModelSize:
    params_millions: float
    worker_mib: int        # one sequential job: encoder activations + beam-5 decoder cache
    batch_item_mib: int    # each further segment of a batched job


# large-v3: derived from faster-whisper's published benchmark (see above); the rest: estimates.
MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(39, 50, 10),
    "base": ModelSize(74, 100, 15),
    "small": ModelSize(244, 290, 45),
    "medium": ModelSize(769, 780, 115),
    "large-v3": ModelSize(1550, 1300, 190),
    "distil-large-v3": ModelSize(756, 700, 100),   # large encoder, 2 decoder layers
}
ALIASES = {"large": "large-v3", "large-v2": "large-v3", "large-v1": "large-v3",
           "turbo": "distil-large-v3", "large-v3-turbo": "distil-large-v3",
           "distil-large-v2": "distil-large-v3", "distil-medium.en": "medium",
           "distil-small.en": "small"}
UNKNOWN_MODEL = "large-v3"   # a model we cannot name is planned as the largest: never too many


def size_key(model_name: str) -> str:
    """tiny.en → tiny, Systran/faster-whisper-large-v3 → large-v3; unknown → the largest."""
    name = model_name.rsplit("/", 1)[-1].lower()
    for prefix in ("faster-whisper-", "whisper-"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name in ALIASES:
        return ALIASES[name]
    base = name[:-3] if name.endswith(".en") else name
    return base if base in MODEL_SIZES else ALIASES.get(base, UNKNOWN_MODEL)


@dataclass(frozen=True)
class Footprint:
    """Bytes one GPU needs: `fixed` once, `per_worker` each, `per_batch_item` each extra item."""
    model: str
    compute_type: str
    fixed: int
    per_worker: int
    per_batch_item: int

    def need(self, workers: int, batch_size: int) -> int:
        extra_items = max(batch_size, 1) - 1
        return self.fixed + workers * (self.per_worker + extra_items * self.per_batch_item)


def footprint(model_name: str, compute_type: str) -> Footprint:
    key = size_key(model_name)
    size = MODEL_SIZES[key]
    weights = int(size.params_millions * 1e6 * BYTES_PER_WEIGHT.get(compute_type, 2))
    return Footprint(key, compute_type, CONTEXT_BYTES + weights, size.worker_mib * MIB,
                     size.batch_item_mib * MIB)
