"""The stages on real media: what PyAV version differences must not change, and damaged media
that must end in a named reason, never in a bug."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from scribewatch.pipeline import stages
from scribewatch.pipeline.errors import SkipJob, StageError
from tests.harness import SHARED_MEDIA
from tests.harness import media as gen


def _with_bad_utf8_title(src: Path, dst: Path) -> Path:
    """An MP3 whose ID3v2 title claims UTF-8 but holds bytes that are not: taggers do this."""
    payload = b"\x03" + b"bad \xff\xfe\xc3 title"
    frame = b"TIT2" + struct.pack(">I", len(payload)) + b"\x00\x00" + payload
    n = len(frame)
    size = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    body = src.read_bytes()
    if body[:3] == b"ID3":   # drop the file's own tag so ours is the one read
        s = body[6:10]
        body = body[10 + ((s[0] << 21) | (s[1] << 14) | (s[2] << 7) | s[3]):]
    dst.write_bytes(b"ID3\x03\x00\x00" + size + frame + body)
    return dst


def test_undecodable_tags_are_read_on_every_pyav(tmp_path):
    # PyAV 18 raises UnicodeDecodeError on such a tag without metadata_errors="ignore"; PyAV 19
    # removed the argument (TypeError if passed). Both must probe and decode the file.
    path = _with_bad_utf8_title(SHARED_MEDIA / "hotwords.mp3", tmp_path / "tagged.mp3")
    with stages.open_container(path) as container:
        title = container.metadata.get("title", "")
    assert title.startswith("bad ") and title.endswith(" title")
    info = stages.probe(path)
    assert info.audio_streams == 1 and info.duration and 3.5 < info.duration < 4.5
    audio = stages.decode(path)
    assert 3.5 < len(audio) / stages.SAMPLE_RATE < 4.5
    assert float(abs(audio).max()) > 0.05   # real sound, not silence


def test_decode_matches_faster_whisper_on_the_pyav_it_supports(tmp_path):
    # Our decoder replaces faster_whisper.decode_audio; where that still runs (PyAV < 19) the
    # samples must be the same, so transcripts do not change with the Python version.
    import av
    import numpy as np

    ours = stages.decode(SHARED_MEDIA / "jfk.flac")
    assert abs(len(ours) / stages.SAMPLE_RATE - 11.0) < 0.05
    if int(av.__version__.split(".")[0]) >= 19:
        return   # faster-whisper's decoder cannot run here: nothing to compare against
    from faster_whisper import decode_audio

    theirs = decode_audio(str(SHARED_MEDIA / "jfk.flac"), sampling_rate=stages.SAMPLE_RATE)
    assert len(ours) == len(theirs)
    assert np.allclose(ours, theirs, atol=1e-6)


# -- damaged media: a named reason, never a bug ----------------------------------------------
def test_an_audio_stream_without_a_codec_is_a_decode_error_not_a_bug(tmp_path):
    # Issue 11: garbling that hits the MP4 sample entry leaves the audio stream without a codec;
    # PyAV opens the file and gives the stream no codec context (and PyAV 19 then refuses
    # `stream.sample_rate` outright). Probe used to die on it with an AttributeError.
    broken = gen.codecless_mp4(gen.load_speech(SHARED_MEDIA / "jfk.flac", 2.0),
                               tmp_path / "garbled.mp4")
    with stages.open_container(broken) as c:
        assert c.streams.audio[0].codec_context is None
    info = stages.probe(broken)
    assert (info.audio_codec, info.sample_rate, info.channels) == ("unknown", 0, 0)
    assert info.duration and abs(info.duration - 2.0) < 0.1
    with pytest.raises(StageError) as e:
        stages.decode(broken)
    assert e.value.reason == "decode_error" and not e.value.transient
    assert e.value.message == (f"{broken}: no decoder for the audio stream "
                               "(a damaged header, or a codec FFmpeg lacks)")


@pytest.mark.parametrize("name, header, reason", [
    ("rate1.wav", dict(rate=1), "decode_error"),          # would resample into 16,000x the audio
    ("rate0.wav", dict(rate=0), "corrupt_container"),
    ("channels0.wav", dict(channels=0), "decode_error"),
    ("bits0.wav", dict(bits=0), "decode_error"),          # no PCM codec for 0-bit samples
    ("format9999.wav", dict(fmt=9999), "decode_error"),   # a codec id FFmpeg does not know
])
def test_damaged_wav_headers_fail_with_their_reason(tmp_path, name, header, reason):
    path = gen.wav_with_header(tmp_path / name, gen.load_speech(SHARED_MEDIA / "jfk.flac", 1.0),
                               **header)
    with pytest.raises(StageError) as e:
        stages.probe(path)
        stages.decode(path)
    assert e.value.reason == reason, e.value.message
    assert e.value.message.startswith(f"{path}: ") and "\n" not in e.value.message
    assert len(e.value.message) < 300


def test_an_empty_audio_stream_is_no_speech_and_a_header_claiming_too_much_is_ignored(tmp_path):
    empty = gen.wav_with_header(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(SkipJob) as s:
        stages.decode(empty)
    assert s.value.reason == "no_speech"
    # A data chunk claiming 4 GiB (a recorder that died before fixing its header): what is
    # there is decoded, no more.
    speech = gen.load_speech(SHARED_MEDIA / "jfk.flac", 2.0)
    liar = gen.wav_with_header(tmp_path / "liar.wav", speech, data_size=0xFFFFFFF0)
    assert abs(len(stages.decode(liar)) / stages.SAMPLE_RATE - 2.0) < 0.01


def test_an_mp3_joined_from_two_sample_rates_decodes_whole(tmp_path):
    # MP3s concatenated as bytes (podcast tools do it): a damaged packet at the join, and the
    # sample rate changes mid-stream, which PyAV's resampler refuses. Both halves are kept.
    speech = gen.load_speech(SHARED_MEDIA / "jfk.flac", 2.0)
    first = gen.write_audio(tmp_path / "a.mp3", speech, "libmp3lame", rate=16000)
    second = gen.write_audio(tmp_path / "b.mp3", speech, "libmp3lame", rate=44100)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    audio = stages.decode(joined)
    assert 3.9 < len(audio) / stages.SAMPLE_RATE < 4.3
    # Speech in both halves, not silence or noise where the second began.
    half = len(audio) // 2
    assert float(np.abs(audio[:half]).max()) > 0.05 and float(np.abs(audio[half:]).max()) > 0.05


def test_errors_raised_by_our_own_code_are_not_taken_for_bad_media():
    # The net around PyAV calls catches TypeError, AttributeError… only from inside PyAV; the
    # same types raised by a line of the pipeline stay bugs (internal_error, with a traceback).
    with pytest.raises(TypeError) as e:
        av.AudioResampler(format="s16", layout="mono", rate=16000).resample("not a frame")
    assert stages._from_library(e.value)
    with pytest.raises(AttributeError) as e:
        stages._audio_stream(object())
    assert not stages._from_library(e.value)


class _Recording:
    """The real tiny.en model; each call's keyword arguments are kept."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def transcribe(self, audio, **kwargs):
        self.calls.append(kwargs)
        return self.model.transcribe(audio, **kwargs)


def test_a_pinned_temperature_reaches_faster_whisper_in_both_passes(model_dir):
    """faster-whisper takes a float as the one temperature tried (no sampled fallback) and a
    list as the fallback schedule. A configured number must reach it in the guard's safer
    re-run too, or a pinned decode would sample there; unset, Whisper's own list is used."""
    from faster_whisper import WhisperModel

    model = _Recording(WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2))
    audio = stages.decode(SHARED_MEDIA / "jfk.flac")
    pinned = stages.TranscribeOptions(language="en", temperature=0.0)
    first = stages.transcribe(model, audio, pinned)
    again = stages.transcribe(model, audio, pinned, safer=True)
    stages.transcribe(model, audio, stages.TranscribeOptions(language="en"))
    assert [c.get("temperature") for c in model.calls] == [0.0, 0.0, None]
    assert model.calls[1]["repetition_penalty"] > 1        # still the safer settings
    assert "country" in first.text and "country" in again.text
