"""Shared fixtures: the real speech, the offline model, and real daemons that are stopped at
the end of each test. The helpers behind them live in `tests/harness/`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests import harness
from tests.harness import SHARED_MEDIA
from tests.harness.daemon import Daemon
from tests.harness.postgres import PostgresServer, require_postgres


@pytest.fixture(scope="session")
def media() -> Path:
    if not (SHARED_MEDIA / "jfk.flac").exists():
        pytest.fail(f"test media missing: {SHARED_MEDIA}")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def model_dir() -> str:
    return harness.model_dir()


@pytest.fixture(scope="session")
def language_media(media, tmp_path_factory) -> dict[str, Path]:
    """The language tests' media (tests/harness/language_media.py), made once per session."""
    from tests.harness import language_media as made

    harness.require_binary("ffmpeg")
    return made.build(media, tmp_path_factory.mktemp("language-media"))


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory) -> str:
    """The offline multilingual `base` (the `multilingual` extra), assembled once."""
    from scribewatch.pipeline.model import resolve_model

    folder, _ = resolve_model("base", str(tmp_path_factory.mktemp("models")))
    return folder


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL 15 server for the session (skipped without one, failed under CI)."""
    require_postgres()
    server = PostgresServer.start_new()
    yield server
    server.destroy()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture
def daemon_factory(tmp_path, model_dir):
    """Build (not start) daemons; every one started is stopped at teardown."""
    made: list[Daemon] = []

    def make(overrides: dict | None = None, sub: str = "d", **kw) -> Daemon:
        d = Daemon(tmp_path / sub, {"model": model_dir, **(overrides or {})}, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


def _transcribe(model, path: Path):
    """Real faster-whisper output converted to the pipeline's dataclasses.

    Decoded by the pipeline: faster-whisper decodes a path with an `av.open` call PyAV 19 rejects.
    Temperature 0 alone: Whisper's fallback temperatures sample at random, and the tests read
    the words (tiny.en's inventions on multilingual.mp3's German half most of all).
    """
    from scribewatch.pipeline.stages import decode
    from scribewatch.pipeline.transcript import Segment, Transcript, Word

    segments, info = model.transcribe(decode(path), word_timestamps=True, beam_size=5,
                                      vad_filter=True, condition_on_previous_text=False,
                                      temperature=0.0)
    return Transcript(
        language=info.language, language_probability=float(info.language_probability),
        duration=float(info.duration), model="tiny.en",
        segments=tuple(
            Segment(float(s.start), float(s.end), s.text,
                    tuple(Word(float(w.start), float(w.end), w.word, float(w.probability))
                          for w in s.words),
                    float(s.avg_logprob), float(s.no_speech_prob), float(s.compression_ratio))
            for s in segments))


@pytest.fixture(scope="session")
def real_speech(media, model_dir) -> dict:
    """jfk.flac and multilingual.mp3 through the real offline tiny.en model, loaded once."""
    import faster_whisper

    model = faster_whisper.WhisperModel(model_dir, device="cpu", compute_type="int8",
                                        cpu_threads=2)
    return {name: _transcribe(model, media / name) for name in ("jfk.flac", "multilingual.mp3")}
