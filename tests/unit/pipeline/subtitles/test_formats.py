"""The format registry is the one list of output formats: the setting's choices, the writer, the
API's accepted values and answers, and the README all come from it."""

from __future__ import annotations

import dataclasses

from scribewatch.pipeline import config, contract, docs, stages
from scribewatch.pipeline.api import render as api_render
from scribewatch.pipeline.subtitles import formats
from scribewatch.pipeline.subtitles.cues import Cue, render_json, render_srt, render_txt, render_vtt
from scribewatch.pipeline.subtitles.formats import ASR, FORMATS, OPENAI, Format
from scribewatch.pipeline.transcript import Segment, Transcript, Word

TRANSCRIPT = Transcript(
    language="en", language_probability=0.99, duration=2.0,
    segments=(Segment(0.0, 1.25, " Hello there.", (Word(0.0, 0.5, " Hello"),
                                                    Word(0.5, 1.25, " there."))),))
CUES = [Cue(0.0, 1.25, ("Hello there.",))]


def test_renderers_by_format_name():
    assert list(formats.FOLDER_FORMATS) == ["srt", "vtt", "txt", "json"]
    assert FORMATS["srt"].render(TRANSCRIPT, CUES) == render_srt(CUES)
    assert FORMATS["vtt"].render(TRANSCRIPT, CUES) == render_vtt(CUES)
    assert FORMATS["txt"].render(TRANSCRIPT, CUES) == render_txt(TRANSCRIPT)
    assert FORMATS["json"].render(TRANSCRIPT, CUES) == render_json(TRANSCRIPT, CUES)
    assert FORMATS["tsv"].render(TRANSCRIPT, CUES) == "start\tend\ttext\n0\t1250\tHello there.\n"


def test_the_setting_the_api_and_the_docs_read_the_registry():
    assert config.OUTPUT_FORMATS == formats.FOLDER_FORMATS
    assert f"Any of {', '.join(formats.FOLDER_FORMATS)}." in docs.reference_markdown()
    assert contract.ASR_OUTPUTS == ("srt", "vtt", "txt", "tsv", "json")
    assert contract.OPENAI_OUTPUTS == ("srt", "vtt", "text", "json", "verbose_json")
    assert set(contract.API_OUTPUTS) == set(contract.ASR_OUTPUTS) | set(contract.OPENAI_OUTPUTS)
    assert "| `POST /asr`: `output` (default `txt`) | `srt`, `vtt`, `txt`, `tsv`, `json` |" \
        in docs.api_outputs_markdown()


def test_a_new_format_is_one_entry(monkeypatch, tmp_path):
    """What a newcomer's `.ass` would be: one entry, and the writer, the API's lists and its
    answers take it."""
    def render_upper(transcript, cues):
        return transcript.text.upper() + "\n"
    monkeypatch.setitem(FORMATS, "upper", Format(render_upper, api=(ASR, OPENAI)))
    assert "upper" in formats.api_outputs(ASR) and "upper" in formats.api_outputs(OPENAI)
    body, kind = api_render.render(TRANSCRIPT, "upper")
    assert body == b"HELLO THERE.\n" and kind.startswith("text/plain")
    written = stages.write(TRANSCRIPT, {"upper": tmp_path / "a.en.upper"})
    assert (tmp_path / "a.en.upper").read_text() == "HELLO THERE.\n" and len(written) == 1


def test_a_folder_only_format_is_no_api_answer():
    assert all(isinstance(f, Format) and dataclasses.is_dataclass(f) for f in FORMATS.values())
    assert "json" not in [n for n, f in FORMATS.items() if f.api]   # the API's json is its own
    assert not FORMATS["text"].folder and not FORMATS["tsv"].folder
