"""A container's audio and subtitle tracks as the pipeline sees them, and which audio track a
file is transcribed from.

A film often carries its original audio, dubs and a director's commentary. The track is chosen
by `preferred_audio_languages` (in the user's order), else the one flagged default, else the
first; a commentary (its title says so, or FFmpeg's `comment` / `visual_impaired` disposition:
audio description) is never chosen by default, only when nothing else is there.
"""

from __future__ import annotations

import dataclasses

from ..language.codes import to_iso639_1


@dataclasses.dataclass(frozen=True)
class AudioTrack:
    index: int                    # the container's stream index (what decode takes)
    language: str | None          # Whisper's code from the stream's tag; None: und / missing
    tag: str | None               # the tag as written (`ger`, `und`), for the log and history
    title: str = ""
    default: bool = False         # the default disposition
    commentary: bool = False      # title or disposition: commentary / audio description
    decodable: bool = True        # FFmpeg has a decoder for it


@dataclasses.dataclass(frozen=True)
class SubtitleTrack:
    language: str | None          # Whisper's code, None when untagged
    forced: bool = False          # forced-only (signs, foreign lines): not full subtitles


def is_commentary(title: str, dispositions: set[str]) -> bool:
    return "commentary" in title.lower() or bool({"comment", "visual_impaired"} & dispositions)


def audio_track(index: int, tag: str | None, title: str, dispositions: set[str],
                decodable: bool = True) -> AudioTrack:
    return AudioTrack(index, to_iso639_1(tag), tag, title, "default" in dispositions,
                      is_commentary(title, dispositions), decodable)


def choose_audio_track(tracks: tuple[AudioTrack, ...],
                       preferred: tuple[str, ...] = ()) -> AudioTrack | None:
    """The track to transcribe: the first preferred language present, else the default-flagged
    track, else the first; a commentary only when there is nothing else; an undecodable track
    only when nothing else is there (decode then names the failure)."""
    if not tracks:
        return None
    usable = [t for t in tracks if t.decodable] or list(tracks)
    main = [t for t in usable if not t.commentary] or usable
    for wanted in preferred:
        code = to_iso639_1(wanted)
        for track in main:
            if code and track.language == code:
                return track
    return next((t for t in main if t.default), main[0])


def chosen_index(tracks: tuple[AudioTrack, ...], preferred: tuple[str, ...] = ()) -> int | None:
    """The container index of `choose_audio_track`'s track (None: no audio track known): what
    the runner decodes, and so what the prefetch decodes ahead."""
    track = choose_audio_track(tracks, preferred)
    return track.index if track else None
