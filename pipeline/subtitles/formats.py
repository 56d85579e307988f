"""The output formats, in one place: each format's renderer, whether a folder job may write it
and which HTTP API protocols answer with it. Everything else reads this registry: the
`output_formats` setting's choices and its line in the README (config.py), the writer
(stages.write), the API's accepted `output` / `response_format` values (api/contract.py, and
through the contract the exporter's routes) and the API's answer bodies (api/render.py).

A new format is a renderer (here or in cues.py) and one entry in FORMATS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ..transcript import Transcript
from .cues import Cue, render_json, render_srt, render_txt, render_vtt

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

# The HTTP API's protocols: whisper-asr-webservice's `output` (what Bazarr asks for) and
# OpenAI's `response_format`.
ASR, OPENAI = "asr", "openai"

Renderer = Callable[[Transcript, Sequence[Cue]], str]


@dataclasses.dataclass(frozen=True)
class Format:
    render: Renderer                 # the file's (or the answer's) text
    folder: bool = True              # `output_formats` may name it: `<stem>.<lang>.<name>`
    api: tuple[str, ...] = ()        # the API protocols that answer with this renderer
    content_type: str = TEXT         # the API answer's Content-Type


def render_tsv(transcript: Transcript, cues: Sequence[Cue]) -> str:
    """whisper-asr-webservice's tsv: milliseconds, tab-separated, a header row."""
    rows = ["start\tend\ttext"]
    rows += [f"{round(c.start * 1000)}\t{round(c.end * 1000)}\t{c.text.replace(chr(9), ' ')}"
             for c in cues]
    return "\n".join(rows) + "\n"


FORMATS: dict[str, Format] = {
    "srt": Format(lambda transcript, cues: render_srt(cues), api=(ASR, OPENAI)),
    "vtt": Format(lambda transcript, cues: render_vtt(cues), api=(ASR, OPENAI)),
    "txt": Format(lambda transcript, cues: render_txt(transcript), api=(ASR,)),
    # The file's JSON (segments, words, cues). The API's `json` is the protocols' own document.
    "json": Format(render_json, content_type=JSON),
    "tsv": Format(render_tsv, folder=False, api=(ASR,)),
    "text": Format(lambda transcript, cues: transcript.text + "\n", folder=False, api=(OPENAI,)),
}

# The JSON answers whose fields the API protocols define (not subtitle formats): rendered by
# api/render.py, which needs the request's task and word timestamps for them.
API_DOCUMENTS: dict[str, tuple[str, ...]] = {"json": (ASR, OPENAI), "verbose_json": (OPENAI,)}

# What a folder job may write: the `output_formats` setting's choices.
FOLDER_FORMATS = tuple(name for name, f in FORMATS.items() if f.folder)


def api_outputs(protocol: str) -> tuple[str, ...]:
    """The answer formats one API protocol accepts."""
    names = [name for name, f in FORMATS.items() if protocol in f.api]
    return tuple(names + [name for name, protocols in API_DOCUMENTS.items()
                          if protocol in protocols and name not in names])
