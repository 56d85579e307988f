"""The stages on real media: what PyAV version differences must not change."""

from __future__ import annotations

import struct
from pathlib import Path

from pipeline import stages

from conftest import SHARED_MEDIA


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
