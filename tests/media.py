"""Test media made from the shared real speech: video containers, silence, corrupt files.

Everything is generated in-process with PyAV and numpy, so tests download nothing.
"""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

RATE = 16000


def load_speech(path: Path, seconds: float | None = None) -> np.ndarray:
    from pipeline.stages import decode   # not faster_whisper.decode_audio: it breaks on PyAV 19

    audio = decode(path)
    return audio[: int(seconds * RATE)] if seconds else audio


def write_wav(path: Path, audio: np.ndarray) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
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
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
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
