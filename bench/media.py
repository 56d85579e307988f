"""The speech the benchmarks use, and the files they make of it.

Clips come from the real speech in `../shared/media/`; long files are concatenations of them,
written as WAV (stdlib `wave`) or MP3/FLAC (PyAV) under `bench/work/`, which git ignores:
media are never committed. `copy_closed` drops a file the way a downloader does.
"""

from __future__ import annotations

import random
import time
import wave
from pathlib import Path

from bench.common import REPO

MEDIA = REPO.parent / "shared" / "media"
SAMPLE_RATE = 16000

# Reference texts of the speech we use. jfk.flac: the exact words (media/README.md).
# multilingual.mp3 reads the MIT licence's first paragraph in its first ~30 s (then it switches
# to another language, which tiny.en cannot transcribe): we use only that English part. The
# reader leaves out the licence's parenthesis `(the "Software")` (no decoder, batched or not,
# ever hears it), so the reference leaves it out too.
JFK_TEXT = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
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

    if name not in _CLIPS:
        from scribewatch.pipeline.stages import decode   # faster_whisper.decode_audio breaks on PyAV 19

        if name == "jfk":
            _CLIPS[name] = decode(MEDIA / "jfk.flac")
        elif name == "license":
            full = decode(MEDIA / "multilingual.mp3")
            _CLIPS[name] = np.ascontiguousarray(full[: int(LICENSE_SECONDS * SAMPLE_RATE)])
        elif name in LICENSE_PARTS:
            start, end, _ = LICENSE_PARTS[name]
            full = clip("license")
            _CLIPS[name] = np.ascontiguousarray(
                full[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])
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
            parts.append(np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), dtype=np.float32))
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


def write_wav(path: Path, samples) -> None:
    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def write_encoded(path: Path, samples, codec: str = "mp3", bitrate: int = 64000) -> None:
    """MP3 (libmp3lame) or FLAC through PyAV: long files in the formats people really drop."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame" if codec == "mp3" else codec, rate=SAMPLE_RATE)
        stream.layout = "mono"
        if codec == "mp3":
            stream.bit_rate = bitrate
        frame_size = 1152 if codec == "mp3" else 4608
        for i in range(0, len(pcm), frame_size):
            chunk = pcm[i:i + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_media(path: Path, samples) -> None:
    ext = path.suffix.lower().lstrip(".")
    if ext == "wav":
        write_wav(path, samples)
    else:
        write_encoded(path, samples, ext)


def copy_closed(src: Path, dst: Path, chunk: int = 256 * 1024) -> float:
    """Write `dst` the way a downloader does (chunks, then close); returns the close time."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            data = fi.read(chunk)
            if not data:
                break
            fo.write(data)
    return time.time()
