"""Clients of the daemon's transcription API, as the real ones call it.

`bazarr_*` send exactly what Bazarr's `whisperai` provider sends (python-requests, a session
with its User-Agent, `files={'audio_file': <raw PCM>}`, the query parameters in its order, the
(connect, read) timeout pair); docs/dev/integration-facts.md §1 has the provider's source.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import wave
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from tests.harness.media import RATE, load_speech

BAZARR_TIMEOUT = (5, 3600)        # Bazarr's defaults: `response` (connect), `timeout` (read)


def pcm_s16le(audio: np.ndarray) -> bytes:
    """What Bazarr's ffmpeg call produces: s16le, mono, 16 kHz, no header."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def speech_pcm(path: Path, start: float = 0.0, end: float | None = None) -> bytes:
    audio = load_speech(path)
    return pcm_s16le(audio[int(start * RATE): None if end is None else int(end * RATE)])


def long_speech(media: Path, minutes: float) -> np.ndarray:
    """Real speech for `minutes`: JFK's 11 s, a 4-s pause, again and again."""
    jfk = load_speech(media / "jfk.flac")
    block = np.concatenate([jfk, np.zeros(4 * RATE, np.float32)])
    return np.tile(block, int(minutes * 60 * RATE / len(block)) + 1)[: int(minutes * 60 * RATE)]


def long_speech_wav(media: Path, path: Path, minutes: float) -> Path:
    """long_speech() as a WAV, written a few minutes at a time (two hours is 230 MB), beside
    `path` and renamed to it: a file that appears whole, as a finished download does."""
    block = pcm_s16le(long_speech(media, 5))
    staged = path.with_name(f".staging-{path.name}")
    with wave.open(str(staged), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        left = int(minutes * 60 * RATE) * 2
        while left > 0:
            w.writeframes(block[:left])
            left -= len(block)
    os.replace(staged, path)
    return path


def bazarr_session():
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "Subliminal/2.1"
    return session


def bazarr_asr(url: str, pcm: bytes, language: str = "en", task: str = "transcribe",
               video_file: str | None = None, session=None):
    params = {"task": task, "language": language, "output": "srt", "encode": "false",
              "video_file": video_file}          # requests drops the None, as in Bazarr
    return (session or bazarr_session()).post(f"{url}/asr", params=params,
                                              files={"audio_file": pcm},
                                              timeout=BAZARR_TIMEOUT)


def bazarr_detect(url: str, pcm: bytes, session=None):
    return (session or bazarr_session()).post(f"{url}/detect-language",
                                              params={"encode": "false"},
                                              files={"audio_file": pcm}, timeout=BAZARR_TIMEOUT)


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def multipart_body(field: str, payload: bytes, boundary: str = "scribewatch-test") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{field}\"\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()


def post_then_hang_up(url: str, path_and_query: str, body: bytes, until, timeout: float = 60,
                      boundary: str = "scribewatch-test") -> float:
    """Send a whole request, wait (unanswered) until `until()` is true, then close the
    connection; returns the monotonic time of the hang-up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        head = (f"POST {path_and_query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body)
        sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("the condition for hanging up never came")
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            raise AssertionError(f"the server answered or closed before the hang-up: "
                                 f"{data[:200]!r}")
    return time.monotonic()
