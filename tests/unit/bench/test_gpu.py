"""bench/gpu.py's corpus is WAV that reads back without PyAV, with references that match."""

from __future__ import annotations

import numpy as np

from bench import gpu
from bench.media import LICENSE_PARTS


def test_wav_round_trip_without_pyav(tmp_path):
    audio = np.sin(np.linspace(0, 200, gpu.RATE)).astype(np.float32) * 0.5
    gpu.write_wav(tmp_path / "a.wav", audio)
    back = gpu.read_wav(tmp_path / "a.wav")
    assert back.dtype == np.float32 and len(back) == len(audio)
    assert np.max(np.abs(back - audio)) < 1e-4


def test_quick_corpus_lengths_and_references():
    corpus = gpu.make_corpus(quick=True)
    assert [round(f["seconds"]) // 10 for f in corpus][0] == 1        # the 11-s jfk file
    assert corpus[-1]["seconds"] >= 120                                # one long file
    pieces = {text for _, (_, _, text) in LICENSE_PARTS.items()}
    for f in corpus:
        assert abs(len(gpu.read_wav(f["path"])) / gpu.RATE - f["seconds"]) < 0.01
        # No sentence twice in a row: the daemon's guard would take three for a loop.
        for text in pieces:
            assert text + " " + text not in f["reference"]
