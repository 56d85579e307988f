"""Decoded audio is on the clock a player shows (issue 21): sample i of `decode`'s array is at
i / 16000 s from the container's start. Real files made by ffmpeg (tests/harness/containers.py),
a signal of tone bursts whose onsets are found to the sample, and each rule checked against
what ffprobe reports for the same file.

Sources for the rules:
* the player's clock starts at the container's start time: mpv's `--rebase-start-time` (on by
  default; mpv applies `ts_offset = -demuxer->start_time` to every packet), FFmpeg's
  `AVFormatContext.start_time` in AV_TIME_BASE (µs), what `ffprobe -show_entries
  format=start_time` prints;
* MP4 edit lists: ISO/IEC 14496-12 §8.6.6 (`elst`; an empty edit, media_time -1, delays a
  track; a media_time > 0 skips its start), applied by FFmpeg's mov demuxer;
* AAC priming: the encoder's 1024 samples before the first real one (Apple's QuickTime File
  Format, "Audio Priming"), cut by the MP4 edit list (the demuxer marks them with skip_samples
  side data, which ffprobe -show_packets shows); Matroska and MPEG-TS carry no such signal, so
  players play them and the audio's first packet is stamped 64 ms (1024 / 16000) early;
* Opus pre-skip: RFC 7845 §4.2 (Ogg: the OpusHead field, 312 samples at 48 kHz from libopus),
  Matroska's CodecDelay for MKV/WebM;
* MPEG-TS stamps 33-bit 90 kHz PTS (ISO/IEC 13818-1 §2.4.3.7: they wrap after 26.5 h, which
  FFmpeg's demuxer unwraps); FFmpeg's muxer starts them after its mux delay (~1.4 s);
* holes and jitter: FFmpeg's own timestamp followers (af_asyncts `min_delta`, aresample
  `min_hard_comp`, 0.1 s by default) pad holes, trim overlaps and leave differences below a
  tolerance alone; ours is 40 ms (pipeline/media/timeline.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from scribewatch.pipeline.errors import StageError
from scribewatch.pipeline.media import reader
from scribewatch.pipeline.media.timeline import (
    MAX_OVERLAP_SECONDS,
    TOLERANCE_SECONDS,
    Hole,
    Timeline,
)
from tests.harness import containers
from tests.harness.containers import bursts, onsets, start_times
from tests.harness.media import ffmpeg

TIMES = [1.0, 2.5, 4.5, 6.0]          # burst onsets in the input, seconds
LENGTH = 8.0
# The onset detector reads a burst 0.125 ms late (its sine's 2nd sample); lossless codecs keep
# it there, lossy ones move it by under a millisecond (measured: AAC 0.1 ms, Opus in
# Matroska 0.6 ms early, its timestamps being rounded to the millisecond).
LOSSLESS, LOSSY = 0.0005, 0.002


@pytest.fixture(scope="module")
def signal():
    return bursts(TIMES, LENGTH)


def assert_on_clock(clock: containers.Clock, tolerance: float, times=TIMES) -> reader.DecodedAudio:
    decoded = reader.decode_placed(clock.path)
    want = [clock.at(t) for t in times]
    got = onsets(decoded.audio)
    assert len(got) == len(want), (got, want)
    assert all(abs(g - w) < tolerance for g, w in zip(got, want)), (got, want)
    return decoded


# -- where the audio starts -------------------------------------------------------------------
@pytest.mark.parametrize("write", [containers.wav, containers.flac])
def test_pcm_and_flac_are_sample_exact_from_zero(tmp_path, signal, write):
    clock = write(signal, tmp_path / f"a.{write.__name__}")
    decoded = assert_on_clock(clock, LOSSLESS)
    assert len(decoded.audio) == len(signal)
    assert decoded.placement == reader.Placement()


@pytest.mark.parametrize("write", [containers.mkv_late, containers.mp4_late])
def test_audio_starting_after_the_picture_is_placed_that_late(tmp_path, signal, write):
    """The WEB-DL case (issue 21; subgen PR #305's Amazon WEB-DLs, 4 s early): the audio track
    starts 3.5 s into the container (`-itsoffset 3.5`). ffprobe: format start 0, video 0, audio
    3.436 (3.5 less the AAC priming packet: in MKV no priming signal exists; in MP4 ffmpeg
    writes an empty edit of 3.436 s). Each burst must be at t + 3.5, not at t (3.5 s early)."""
    path = tmp_path / ("late.mkv" if write is containers.mkv_late else "late.mp4")
    clock = write(signal, path, 3.5)
    origin, streams = start_times(path)
    assert origin == 0.0 and streams["video"] == 0.0
    assert streams["audio"] == pytest.approx(3.5 - 1024 / 16000, abs=0.001)
    assert clock.offset == pytest.approx(3.5)
    decoded = assert_on_clock(clock, LOSSY)
    # The audio goes where ffprobe says its first packet is.
    assert decoded.placement.start == pytest.approx(streams["audio"] - origin, abs=0.001)
    assert not decoded.audio[:int(3.4 * 16000)].any()        # silence before it, not audio


def test_audio_starting_before_the_picture(tmp_path, signal):
    """`-itsoffset 2` on the video: Matroska keeps all the audio (ffprobe: audio 0, video
    2.064, format 0), so the bursts stay at t + the AAC priming (64 ms, played: the container
    starts with the priming packet). In MP4 (`-itsoffset -2` on the audio), ffmpeg writes an
    edit list whose media_time skips the audio's first 2 s (ffprobe: audio 0, video 0): the
    burst at 1.0 is not played, the others are 2 s earlier."""
    mkv = containers.mkv_late(signal, tmp_path / "early.mkv", -2.0)
    origin, streams = start_times(mkv.path)
    assert (origin, streams["audio"]) == (0.0, 0.0)
    assert streams["video"] == pytest.approx(2.0 + 1024 / 16000, abs=0.001)
    assert mkv.offset == pytest.approx(1024 / 16000, abs=0.001)
    assert_on_clock(mkv, LOSSY)

    mp4 = containers.mp4_late(signal, tmp_path / "early.mp4", -2.0)
    assert start_times(mp4.path) == (0.0, {"video": 0.0, "audio": 0.0})
    assert_on_clock(mp4, LOSSY, times=TIMES[1:])
    assert mp4.at(TIMES[1]) == pytest.approx(0.5)


def test_an_mp4_edit_list_that_starts_inside_a_frame(tmp_path, signal):
    """`ffmpeg -ss 0.5 -c copy`: the copy starts at the AAC frame before 0.5 s and its edit
    list's media_time skips to 0.5 s (ffprobe -show_packets: the first packet at -0.052 s,
    the format's start 0): the decoder drops the first 832 samples, bursts at t - 0.5."""
    whole = containers.aac_mp4(signal, tmp_path / "whole.m4a")
    cut = tmp_path / "cut.m4a"
    ffmpeg("-ss", "0.5", "-i", str(whole.path), "-c", "copy", str(cut))
    assert start_times(cut)[0] == 0.0
    decoded = assert_on_clock(containers.Clock(cut, offset=-0.5), LOSSY)
    assert decoded.placement.start == 0.0


@pytest.mark.parametrize("name", ["aac.m4a", "opus.ogg", "opus.mkv", "opus.webm"])
def test_encoder_delay_is_not_played(tmp_path, signal, name):
    """AAC priming in MP4 (ffprobe -show_packets: the first packet at -0.064 s with
    skip_samples=1024) and Opus pre-skip (Ogg: skip_samples=312 at 48 kHz, RFC 7845 §4.2;
    MKV/WebM: CodecDelay, the first packet at -0.002 s after Matroska's millisecond rounding):
    the delay is cut, so the bursts are at t."""
    write = containers.aac_mp4 if name.startswith("aac") else containers.opus
    clock = write(signal, tmp_path / name)
    assert clock.offset == 0.0
    decoded = assert_on_clock(clock, LOSSY)
    assert abs(len(decoded.audio) / 16000 - LENGTH) < 0.1


@pytest.mark.parametrize("ts_offset, origin, m2ts", [
    (None, 1.4, False),               # FFmpeg's mux delay
    (100.0, 101.336, False),          # a DVR recording starts anywhere
    (95440.0, -2.381689, False),      # 33-bit PTS wrap 2.3 s in: FFmpeg unwraps it
    (100.0, 101.336, True),           # Blu-ray M2TS: 192-byte packets, the same clock inside
])
def test_mpegts_timestamps_far_from_zero(tmp_path, signal, ts_offset, origin, m2ts):
    """ffprobe: the format starts where the audio's priming packet is (1.4 s by the mux
    delay; 101.336 with `-output_ts_offset 100`; negative when the PTS wraps, the demuxer
    counting the pre-wrap part back from 0); the picture 64 ms later. Bursts at t + 0.064 on the
    player's clock, whatever the raw timestamps are."""
    clock = containers.mpegts(signal, tmp_path / ("rec.m2ts" if m2ts else "rec.ts"), ts_offset,
                              m2ts=m2ts)
    head = clock.path.read_bytes()[:512]
    if m2ts:   # 192-byte packets: the sync byte 0x47 four bytes into each
        assert head[4] == head[196] == head[388] == 0x47
    # Recognised as media, so a damaged one is a corrupt_container, not `not_media`.
    assert reader._looks_like_media(head)
    start, streams = start_times(clock.path)
    assert start == pytest.approx(origin, abs=0.001)
    assert streams["audio"] == pytest.approx(start, abs=0.001)
    assert clock.offset == pytest.approx(1024 / 16000, abs=0.001)
    decoded = assert_on_clock(clock, LOSSY)
    assert decoded.placement == reader.Placement()             # no hole, no jump at the wrap


# -- holes and overlaps -----------------------------------------------------------------------
def test_a_dropout_becomes_silence_of_its_length(tmp_path, signal):
    """A DVR recording whose timestamps skip 5 s at 3.5 s (Jellyfin/Plex Live TV after a signal
    dropout): what follows is 5 s later, as the player shows it, and the hole is silent. Counted
    from 0, the bursts after it were 5 s early."""
    clock = containers.mpegts_dropout(signal, tmp_path / "dropout.ts", 3.5, 5.0)
    assert clock.hole == pytest.approx((3.5, 5.0), abs=0.002)
    decoded = assert_on_clock(clock, LOSSY)
    (hole,) = decoded.placement.holes
    # The first piece's audio runs a codec frame or two past 3.5 s (encoder tail and flush);
    # the second's priming starts 64 ms before its first sample.
    assert 3.5 < hole.at < 3.7 and 4.8 < hole.seconds < 5.0
    assert hole.at + hole.seconds == pytest.approx(3.5 + 5.0 + clock.offset - 1024 / 16000,
                                                   abs=0.001)
    lo, hi = round(hole.at * 16000), round((hole.at + hole.seconds) * 16000)
    assert not decoded.audio[lo:hi].any()


def test_an_overlap_is_trimmed(tmp_path, signal):
    """The second piece is stamped 0.5 s back, over the first one's end: what overlaps is
    dropped (the later audio, like FFmpeg's aresample), what follows is 0.5 s earlier."""
    clock = containers.mpegts_dropout(signal, tmp_path / "overlap.ts", 3.5, -0.5)
    decoded = assert_on_clock(clock, LOSSY)
    assert decoded.placement.holes == () and decoded.placement.resets == 0
    # 0.5 s, plus the first piece's tail past 3.5 s.
    assert 0.5 < decoded.placement.trimmed < 0.7


def test_timestamps_that_restart_are_appended_not_trimmed(tmp_path, signal):
    """Two recordings joined byte-wise, the second stamped from where the first began: a step
    back of 3.5 s (over MAX_OVERLAP_SECONDS). Trimming it would drop the second recording; it
    is appended after the first instead, and every burst is kept."""
    assert 3.5 > MAX_OVERLAP_SECONDS
    clock = containers.mpegts_dropout(signal, tmp_path / "restart.ts", 3.5, -3.5)
    decoded = reader.decode_placed(clock.path)
    assert decoded.placement.resets == 1 and decoded.placement.trimmed == 0
    got = onsets(decoded.audio)
    assert len(got) == len(TIMES)
    # After the join: the first piece's tail and the second's priming (~0.2 s) in between.
    assert all(0 <= g - (t + clock.offset) < 0.25 for g, t in zip(got, TIMES))


def test_timestamp_jitter_makes_no_gaps(tmp_path):
    """AAC at 44.1 kHz in Matroska: frames of 1024 / 44100 = 23.22 ms stamped to the
    millisecond, so consecutive timestamps disagree with the samples by up to 0.5 ms. A
    continuous tone decodes without a hole, a trimmed sample or a silent stretch."""
    path = tmp_path / "jitter.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=6",
           "-c:a", "aac", str(path))
    decoded = reader.decode_placed(path)
    assert decoded.placement == reader.Placement()
    audio = decoded.audio[1600:-1600]            # the encoder's fade in and out aside
    # Every 10 ms window carries the tone: no gap anywhere.
    windows = audio[:len(audio) // 160 * 160].reshape(-1, 160)
    assert float(abs(windows).max(axis=1).min()) > 0.05
    assert abs(len(decoded.audio) / 16000 - 6.0) < 0.05


# -- absurd jumps -----------------------------------------------------------------------------
def test_timestamps_leaping_hours_are_a_timestamp_jump(tmp_path, signal):
    """A second piece stamped 3 h later: a broken mux, not hours of silence to transcribe."""
    clock = containers.mpegts_dropout(signal, tmp_path / "jump.ts", 3.5, 3 * 3600)
    with pytest.raises(StageError) as e:
        reader.decode(clock.path)
    assert e.value.reason == "timestamp_jump" and e.value.stage == "decode"
    assert not e.value.transient
    assert e.value.message.startswith(f"{clock.path}: the timestamps jump 3.0 h ahead at 3.6s")


# -- the timeline's rules, frame by frame -----------------------------------------------------
def test_the_timeline_follows_timestamps_within_its_tolerance():
    line = Timeline(10.0, 1000, "x", 10**6)
    frame = np.ones(100, np.int16)
    assert line.place(10.0, 0.1) == 0
    line.seek(0)
    line.write(frame)
    # Jitter under the tolerance: the samples run on, back to back.
    assert line.place(10.1 + TOLERANCE_SECONDS / 2, 0.1) is None
    line.write(frame)
    assert line.place(None, 0.1) is None                     # no timestamp: it follows
    line.write(frame)
    # Drift piling up past the tolerance is a (small) hole at the frame's own time.
    assert line.place(10.3 + 2 * TOLERANCE_SECONDS, 0.1) == 380
    line.seek(380)
    line.write(frame)
    placed = line.placement()
    assert placed.holes == (Hole(0.3, 0.08),)
    assert len(line.audio()) == 480
