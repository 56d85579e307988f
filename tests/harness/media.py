"""Media writers for the tests and the benchmarks, fed with the shared real speech: WAV and
encoded audio, video containers, silence, corrupt files, and a downloader-style copy.

Everything is generated in-process with PyAV and numpy, so nothing is downloaded. The
benchmarks' speech corpus (clips, reference texts, long concatenations) is in bench/media.py.
"""

from __future__ import annotations

import subprocess
import time
import wave
from pathlib import Path

import av
import numpy as np

RATE = 16000


def load_speech(path: Path, seconds: float | None = None) -> np.ndarray:
    from scribewatch.pipeline.stages import (
        decode,  # not faster_whisper.decode_audio: it breaks on PyAV 19
    )

    audio = decode(path)
    return audio[: int(seconds * RATE)] if seconds else audio


def ffmpeg(*args: str) -> None:
    """The ffmpeg command line, quiet, overwriting its output (`require_binary` first)."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


def speech_wav(path: Path, sources: list[Path], gap_seconds: float = 0.5) -> Path:
    """Concatenate real speech files (with short silences) into one WAV."""
    gap = np.zeros(int(gap_seconds * RATE), np.float32)
    parts = []
    for src in sources:
        parts += [load_speech(src), gap]
    return write_wav(path, np.concatenate(parts))


def silence_wav(path: Path, seconds: float = 5.0) -> Path:
    return write_wav(path, np.zeros(int(seconds * RATE), np.float32))


def write_audio(path: Path, audio: np.ndarray, codec: str, *, fmt: str | None = None,
                rate: int = RATE) -> Path:
    """Speech encoded with a real codec in a real container, audio only (`write_wav` for PCM).

    `rate` is the stream's sample rate (Opus takes 48 kHz only): the 16 kHz speech is resampled.
    """
    out = av.open(str(path), "w", format=fmt)
    try:
        sound = out.add_stream(codec, rate=rate)
        sound.layout = "mono"
        step = sound.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono",
                                      rate=rate, frame_size=step)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[i:i + step].reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = RATE, i
            for resampled in resampler.resample(frame):
                for packet in sound.encode(resampled):
                    out.mux(packet)
        for resampled in resampler.resample(None):
            for packet in sound.encode(resampled):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    finally:
        out.close()
    return path


def write_encoded(path: Path, samples: np.ndarray, codec: str = "mp3",
                  bitrate: int = 64000) -> Path:
    """MP3 (libmp3lame) or FLAC: the benchmarks' long files, in the formats people really drop.

    Kept apart from `write_audio` (fixed frame sizes, set bitrate, no resampler) so the
    benchmark corpus stays the same bytes as in earlier measured runs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame" if codec == "mp3" else codec, rate=RATE)
        stream.layout = "mono"
        if codec == "mp3":
            stream.bit_rate = bitrate
        frame_size = 1152 if codec == "mp3" else 4608
        for i in range(0, len(pcm), frame_size):
            chunk = pcm[i:i + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_media(path: Path, samples: np.ndarray) -> Path:
    """WAV, MP3 or FLAC, by the file's extension."""
    ext = path.suffix.lower().lstrip(".")
    return write_wav(path, samples) if ext == "wav" else write_encoded(path, samples, ext)


def copy_closed(src: Path, dst: Path, chunk: int = 256 * 1024) -> float:
    """Write `dst` the way a downloader does (chunks, then close); returns the close time."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            data = fi.read(chunk)
            if not data:
                break
            fo.write(data)
    return time.time()


def mux_with_video(audio_src: Path | None, dst: Path, *, acodec: str = "aac",
                   seconds: float | None = None, fmt: str | None = None) -> Path:
    """A real video container (black mpeg4 frames) with the speech as its audio stream.

    `audio_src=None` makes a video without any audio stream.
    """
    audio = load_speech(audio_src, seconds) if audio_src is not None else None
    duration = len(audio) / RATE if audio is not None else (seconds or 5.0)
    out = av.open(str(dst), "w", format=fmt)
    try:
        video = out.add_stream("mpeg4", rate=5)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        sound = None
        if audio is not None:
            sound = out.add_stream(acodec, rate=RATE)
            sound.layout = "mono"
        black = av.VideoFrame.from_ndarray(np.zeros((120, 160, 3), np.uint8), format="rgb24")
        black = black.reformat(format="yuv420p")
        for i in range(int(duration * 5)):
            black.pts = i
            for packet in video.encode(black):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            pcm = (audio * 32767).astype(np.int16)
            step = sound.codec_context.frame_size or 1024
            resampler = av.AudioResampler(format=sound.codec_context.format.name,
                                          layout="mono", rate=RATE)
            for i in range(0, len(pcm), step):
                chunk = pcm[i:i + step]
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16",
                                                   layout="mono")
                frame.sample_rate, frame.pts = RATE, i
                for resampled in resampler.resample(frame):
                    for packet in sound.encode(resampled):
                        out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    finally:
        out.close()
    return dst


def truncated_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def codecless_mp4(audio: np.ndarray, dst: Path) -> Path:
    """An AAC MP4 whose audio sample entry is overwritten (issue 11's garbled file, made exact):
    the fourcc and the esds object type, both of which FFmpeg tries. It opens, and its audio
    stream has no codec."""
    write_audio(dst, audio, "aac")
    data = bytearray(dst.read_bytes())
    fourcc = data.index(b"mp4a")
    data[fourcc:fourcc + 4] = b"zzzz"
    object_type = data.index(b"\x04\x80\x80\x80", data.index(b"esds")) + 5
    assert data[object_type] == 0x40, "not MPEG-4 audio: the esds layout changed"
    data[object_type] = 0xEE
    dst.write_bytes(bytes(data))
    return dst


def wav_with_header(path: Path, audio: np.ndarray, *, rate: int = RATE, channels: int = 1,
                    bits: int = 16, fmt: int = 1, data_size: int | None = None) -> Path:
    """16-bit mono PCM under a WAV header that says whatever it is told: damaged headers."""
    import struct

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    align = channels * bits // 8
    header = (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt "
              + struct.pack("<IHHIIHH", 16, fmt, channels, rate, (rate * align) & 0xFFFFFFFF,
                            align & 0xFFFF, bits)
              + b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size))
    path.write_bytes(header + pcm)
    return path
