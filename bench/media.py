"""The benchmarks' speech corpus: clips of the real speech in `../shared/media/`, their
reference texts, and long concatenations of them.

The files are written with the harness's writers (`tests.harness.media`: `write_media`,
`write_wav`, `copy_closed`) under `bench/work/`, which git ignores: media are never committed.
"""

from __future__ import annotations

import random

# No PyAV at import time: bench/gpu.py reads the corpus tables here on a machine without it.
from scribewatch.pipeline.media.reader import SAMPLE_RATE as RATE
from tests.harness import JFK_TEXT, SHARED_MEDIA

# Reference texts of the speech we use. jfk.flac: JFK_TEXT, the exact words (media/README.md).
# multilingual.mp3 reads the MIT licence's first paragraph in its first ~30 s (then it switches
# to another language, which tiny.en cannot transcribe): we use only that English part. The
# reader leaves out the licence's parenthesis `(the "Software")` (no decoder, batched or not,
# ever hears it), so the reference leaves it out too.
LICENSE_TEXT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    "software and associated documentation files, to deal in the Software "
    "without restriction, including without limitation the rights to use, copy, modify, merge, "
    "publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons "
    "to whom the Software is furnished to do so, subject to the following conditions: The above "
    "copyright notice and this permission notice shall be included in all copies or substantial "
    "portions of the Software.")
LICENSE_SECONDS = 30.5   # where the English reading ends in multilingual.mp3
# The licence reading cut at its pauses (seconds in multilingual.mp3, found from word timestamps
# and signal energy): long files are made of these in shuffled order, so no sentence repeats
# back to back (three identical sentences in a row is what the hallucination guard calls a
# decoding loop, and it would re-run the job).
LICENSE_PARTS = {
    "L1": (0.0, 8.9, "Permission is hereby granted, free of charge, to any person obtaining a "
                     "copy of this software and associated documentation files, to deal in the "
                     "Software without restriction,"),
    "L2": (8.9, 14.7, "including without limitation the rights to use, copy, modify, merge, "
                      "publish, distribute,"),
    "L3": (14.7, 21.1, "sublicense, and/or sell copies of the Software, and to permit persons to "
                       "whom the Software is furnished to do so,"),
    "L4": (21.1, 25.6, "subject to the following conditions: The above copyright notice and this "
                       "permission notice"),
    "L5": (25.6, 29.3, "shall be included in all copies or substantial portions of the Software."),
}


_CLIPS: dict[str, object] = {}


def clip(name: str):
    """16 kHz mono float32 speech: `jfk` (11 s) or `license` (the English 30.5 s)."""
    import numpy as np

    from tests.harness.media import load_speech  # PyAV: imported only to decode

    if name not in _CLIPS:
        if name == "jfk":
            _CLIPS[name] = load_speech(SHARED_MEDIA / "jfk.flac")
        elif name == "license":
            full = load_speech(SHARED_MEDIA / "multilingual.mp3")
            _CLIPS[name] = np.ascontiguousarray(full[: int(LICENSE_SECONDS * RATE)])
        elif name in LICENSE_PARTS:
            start, end, _ = LICENSE_PARTS[name]
            full = clip("license")
            _CLIPS[name] = np.ascontiguousarray(
                full[int(start * RATE): int(end * RATE)])
        else:
            raise KeyError(name)
    return _CLIPS[name]


CLIP_TEXT = {"jfk": JFK_TEXT, "license": LICENSE_TEXT,
             **{k: v[2] for k, v in LICENSE_PARTS.items()}}


def concat(pieces: list[str], seed: int = 0, gap=(0.3, 1.2)):
    """Clips back to back with short random pauses: (samples, reference text)."""
    import numpy as np

    rng = random.Random(seed)
    parts, texts = [], []
    for i, name in enumerate(pieces):
        if i:
            parts.append(np.zeros(int(rng.uniform(*gap) * RATE), dtype=np.float32))
        parts.append(clip(name))
        texts.append(CLIP_TEXT[name])
    return np.concatenate(parts), " ".join(texts)


def pieces_for(seconds: float, seed: int) -> list[str]:
    """About `seconds` of speech: decks of the licence parts and jfk, each deck shuffled, never
    the same piece twice in a row."""
    rng = random.Random(seed)
    deck = list(LICENSE_PARTS) + ["jfk"]
    length = {k: v[1] - v[0] for k, v in LICENSE_PARTS.items()} | {"jfk": 11.0}
    out, total = [], 0.0
    while total < seconds - 6:
        order = deck[:]
        rng.shuffle(order)
        if out and order[0] == out[-1]:
            order.append(order.pop(0))
        for name in order:
            if total >= seconds - 6:
                break
            out.append(name)
            total += length[name] + 0.75
    return out
