"""Timing: how close subtitle cues start and end to the speech, per container, before (Whisper's
word times alone) and after (snapped to the VAD's speech regions).

The speech is `tests.harness.timed_speech`: the shared real sentences joined by silences of
known lengths, each sentence's onset and offset measured from the clip's own energy (never from
Whisper). Each container holds the same kind of speech (its own draw of sentences and silences)
and goes through the real pipeline as the daemon runs it (`Runner.run`: probe, decode,
transcribe with tiny.en, write SRT and JSON). "after" is the SRT the pipeline wrote; "before"
is the same transcript's words through the same cue builder with `speech=None` (no snapping),
so the two differ by the snapping alone. The wanted times are the sentences' onsets and offsets
on the player's clock (`tests.harness.containers`' `Clock.at`: a late audio stream or a dropout
shifts them).

Timing accuracy does not depend on machine load: this may run beside other work.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench import common
from bench.common import log

NAME = "timing"
TARGETS = {
    "start_error_median_abs_seconds_max": 0.10,
    "start_error_p95_abs_seconds_max": 0.20,
    "start_late_seconds_max": 0.15,          # no cue starts later than this after its speech
    "end_error_seconds_min": -0.10,          # no cue ends earlier than this before its speech's end
    # The transcript vs the same file through faster-whisper's own VAD (`transcribe(vad_filter=
    # True)`, what the transcribe stage ran before speech.detect fed it the chunks).
    "wer_delta_points_max": 0.5,
}
SENTENCES = 14
LATE_SECONDS = 3.5                            # the late audio stream's start (WEB-DL style)
DROPOUT_SECONDS = 5.0
CONTAINERS = ("wav", "flac", "mkv_late_audio", "mp4_late_audio", "mpegts", "mpegts_dropout_5s")


def _writers(speech):
    """Container name -> (file name, write(audio, dst) -> Clock), from tests/harness/containers.py
    (each file's clock comes from ffprobe and the format's rules, never from our decoder)."""
    from tests.harness import containers

    # The dropout goes in the silence before the middle sentence: no sentence is cut by it.
    middle = len(speech.sentences) // 2
    hole_at = round((speech.sentences[middle - 1].offset + speech.sentences[middle].onset) / 2, 3)
    return {
        "wav": ("speech.wav", containers.wav),
        "flac": ("speech.flac", containers.flac),
        "mkv_late_audio": ("speech.mkv",
                           lambda a, dst: containers.mkv_late(a, dst, LATE_SECONDS)),
        "mp4_late_audio": ("speech.mp4",
                           lambda a, dst: containers.mp4_late(a, dst, LATE_SECONDS)),
        "mpegts": ("speech.ts", containers.mpegts),
        "mpegts_dropout_5s": ("speech.ts",
                              lambda a, dst: containers.mpegts_dropout(a, dst, hole_at,
                                                                       DROPOUT_SECONDS)),
    }


def _figures(errors: list[tuple[float | None, float | None]], wer: float,
             problems: list[str]) -> dict:
    starts = [s for s, _ in errors if s is not None]
    ends = [e for _, e in errors if e is not None]
    absolute = [abs(s) for s in starts]
    return {
        "sentences": len(errors),
        "sentences_without_cue": sum(1 for s, _ in errors if s is None),
        "start_error_seconds": [s for s, _ in errors],
        "start_error_median_abs_seconds": round(statistics.median(absolute), 3),
        "start_error_p95_abs_seconds": round(common.quantile(absolute, 0.95), 3),
        "start_error_worst_seconds": max(starts, key=abs),
        "start_error_latest_seconds": max(starts),
        "start_error_mean_seconds": round(statistics.fmean(starts), 3),
        "late_share": round(sum(1 for s in starts if s > TARGETS["start_late_seconds_max"])
                            / len(starts), 3),
        "end_error_seconds": [e for _, e in errors],
        "end_error_median_seconds": round(statistics.median(ends), 3),
        "end_error_earliest_seconds": min(ends),
        "end_error_latest_seconds": max(ends),
        "wer_percent": round(wer * 100, 2),
        "readability_problems": problems,
    }


def _wer_today(runner, path: Path, reference: str, batched: bool) -> float:
    """WER of the file decoded as the pipeline decodes it and transcribed the way the transcribe
    stage did before this change: faster-whisper running its own VAD."""
    from scribewatch.pipeline import stages
    from tests.harness.quality import word_error_rate

    audio = stages.decode(path)
    kwargs = dict(language="en", beam_size=runner.options.beam_size, word_timestamps=True,
                  vad_filter=True, condition_on_previous_text=False)
    with runner.model.use() as model:
        if batched:
            segments, _ = runner.model.batched(model).transcribe(
                audio, batch_size=runner.options.batch_size, **kwargs)
        else:
            segments, _ = model.transcribe(audio, **kwargs)
        text = " ".join(s.text.strip() for s in segments)
    return word_error_rate(reference, text)


def _worst(sides: list[dict]) -> dict:
    """The worst container's figure of each kind."""
    return {
        "start_error_median_abs_seconds": max(f["start_error_median_abs_seconds"] for f in sides),
        "start_error_p95_abs_seconds": max(f["start_error_p95_abs_seconds"] for f in sides),
        "start_error_latest_seconds": max(f["start_error_latest_seconds"] for f in sides),
        "end_error_earliest_seconds": min(f["end_error_earliest_seconds"] for f in sides),
        "late_share": max(f["late_share"] for f in sides),
        "readability_problems": sum(len(f["readability_problems"]) for f in sides),
    }


def measure(name: str, speech, write, folder: Path, runner, batched: bool = False) -> dict:
    """One container through the runner: the figures before and after."""
    from scribewatch.pipeline.runner import JobHooks
    from scribewatch.pipeline.subtitles import build_cues
    from scribewatch.pipeline.transcript import Word
    from tests.harness.quality import check_readability, cue_timing, parse_srt, word_error_rate

    file_name, writer = write
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    clock = writer(speech.audio, path)
    result = runner.run(path, folder, JobHooks())
    srt = next(Path(p) for p in result.outputs if p.endswith(".srt"))
    doc = json.loads(next(Path(p) for p in result.outputs if p.endswith(".json")).read_text())
    after = parse_srt(srt.read_text(encoding="utf-8"))
    words = [Word(w["start"], w["end"], " " + w["text"]) for s in doc["segments"]
             for w in s["words"]]
    before = build_cues(words, max_cps=runner.cfg.max_cps)          # no speech: no snapping
    spans = [(clock.at(s.onset), clock.at(s.offset)) for s in speech.sentences]
    figures = {}
    for side, cues in (("before", before), ("after", after)):
        text = " ".join(c.text for c in cues)
        figures[side] = _figures(cue_timing(cues, spans), word_error_rate(speech.text, text),
                                 check_readability(cues, max_cps=runner.cfg.max_cps))
    figures["wer_today_percent"] = round(_wer_today(runner, path, speech.text, batched) * 100, 2)
    figures["wer_delta_points"] = round(figures["after"]["wer_percent"]
                                        - figures["wer_today_percent"], 2)
    figures["audio_seconds"] = round(speech.seconds, 1)
    figures["path"] = "batched" if batched else "sequential"
    figures["clock"] = {"offset": clock.offset, "hole": clock.hole}
    figures["speech_regions"] = len(doc.get("speech") or [])
    log(f"{name}: start |err| median {figures['before']['start_error_median_abs_seconds']:.3f}"
        f" -> {figures['after']['start_error_median_abs_seconds']:.3f} s, p95 "
        f"{figures['before']['start_error_p95_abs_seconds']:.3f} -> "
        f"{figures['after']['start_error_p95_abs_seconds']:.3f} s, latest "
        f"{figures['before']['start_error_latest_seconds']:+.3f} -> "
        f"{figures['after']['start_error_latest_seconds']:+.3f} s, WER "
        f"{figures['after']['wer_percent']:.2f} % (faster-whisper's own VAD: "
        f"{figures['wer_today_percent']:.2f} %)")
    return figures


def _runner(folder: Path, batched: bool):
    from scribewatch.pipeline import config
    from scribewatch.pipeline.runner import Runner, model_from_config, options_from_config

    flags = {"watch_dirs": [str(folder)], "model": common.model_dir(), "cpu_threads": 2,
             "output_formats": ["srt", "json"]}
    if batched:   # the batched pipeline for every length (long files take it by default)
        flags.update(batch_size=8, batch_min_audio_seconds=0)
    cfg = config.load(None, environ={}, flags=flags)
    return Runner(cfg, model_from_config(cfg), options_from_config(cfg), None)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    res = common.Result(NAME, args.quick)
    res.targets = dict(TARGETS)
    from tests.harness.timed_speech import timed_speech

    count = 5 if args.quick else SENTENCES
    work = common.WORK / NAME
    sequential = _runner(work, batched=False)
    per_container: dict[str, dict] = {}
    for seed, name in enumerate(CONTAINERS):
        speech = timed_speech(count, seed)
        per_container[name] = measure(name, speech, _writers(speech)[name], work / name,
                                      sequential)
    speech = timed_speech(count, 99)
    per_container["wav_batched"] = measure("wav_batched", speech, _writers(speech)["wav"],
                                           work / "wav_batched", _runner(work, batched=True),
                                           batched=True)
    res.measured = {
        "containers": per_container,
        "worst_after": _worst([f["after"] for f in per_container.values()]),
        "worst_before": _worst([f["before"] for f in per_container.values()]),
        "wer_delta_points_max": max(abs(f["wer_delta_points"]) for f in per_container.values()),
    }
    worst, t = res.measured["worst_after"], TARGETS
    res.check("start_median", worst["start_error_median_abs_seconds"]
              <= t["start_error_median_abs_seconds_max"])
    res.check("start_p95", worst["start_error_p95_abs_seconds"]
              <= t["start_error_p95_abs_seconds_max"])
    res.check("start_late", worst["start_error_latest_seconds"] <= t["start_late_seconds_max"])
    res.check("end", worst["end_error_earliest_seconds"] >= t["end_error_seconds_min"])
    res.check("wer", res.measured["wer_delta_points_max"] <= t["wer_delta_points_max"])
    res.config = {"model": "tiny.en (offline default), int8, 2 threads, daemon defaults",
                  "sentences_per_container": count,
                  "silences_seconds": "0.7-2.5, drawn per gap",
                  "late_audio_seconds": LATE_SECONDS, "dropout_seconds": DROPOUT_SECONDS,
                  "onsets": "10-ms RMS frames of each clip (tests/harness/timed_speech.py)"}
    res.finish()


if __name__ == "__main__":
    main()
