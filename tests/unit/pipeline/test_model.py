"""pipeline.model's warm-up, on the real tiny.en: it runs once per load, again after an idle
unload, not at all when turned off (the default on CPU), and the first real job after it is
still right."""

from __future__ import annotations

import time

from scribewatch.pipeline.media.reader import decode
from scribewatch.pipeline.model import ModelManager
from tests.harness import JFK_TEXT, SHARED_MEDIA
from tests.harness.quality import word_error_rate


def manager(**kw) -> ModelManager:
    return ModelManager("tiny.en", device="cpu", compute_type="int8", cpu_threads=2, **kw)


def test_warm_up_runs_once_per_load_and_again_after_an_idle_unload():
    m = manager(idle_unload_minutes=0.001, warmup=True)      # 60 ms idle
    assert (m.warmups, m.warmup_seconds) == (0, None)
    with m.use() as model:
        assert m.warmups == 1 and m.warmup_seconds > 0 and m.load_seconds > 0
        # Decoded by the pipeline: a path would go through faster-whisper's decode_audio,
        # which PyAV 19 (Python >= 3.12) breaks.
        segments, _ = model.transcribe(decode(SHARED_MEDIA / "jfk.flac"), beam_size=5,
                                       temperature=0.0)   # no sampled fallback
        text = " ".join(s.text for s in segments)
    assert word_error_rate(JFK_TEXT, text) < 0.05, text
    with m.use():                                # already loaded: no second warm-up
        pass
    assert m.warmups == 1
    time.sleep(0.1)
    assert m.unload_if_idle() and not m.loaded
    m.load()
    assert m.warmups == 2 and m.warmup_seconds > 0


def test_warm_up_can_be_turned_off_and_is_off_by_default_on_cpu():
    for m in (manager(warmup=False), manager()):
        m.load()
        assert m.loaded and (m.warmups, m.warmup_seconds) == (0, None)
    assert ModelManager("tiny.en", device="cuda", compute_type="float16").warmup
