"""One job's path through the stages: probe → decode → transcribe → write, with the skip policy
asked at each point and the hallucination guard's re-run. Used by the daemon's workers and by
`scribewatch transcribe`; what differs between them (the store, metrics, a progress bar) comes
in through `JobHooks`. Retries, recovery and shutdown are the daemon's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

from . import skip_policy, stages
from .errors import StageError
from .guards import check_transcript
from .model import ModelManager
from .output import output_paths
from .transcript import Transcript

log = logging.getLogger(__name__)


def model_from_config(cfg, *, workers: int = 1) -> ModelManager:
    """The model as configured. `workers`: CTranslate2 replicas (the daemon: one per worker)."""
    return ModelManager(
        cfg.model, models_dir=cfg.models_dir, device=cfg.device, compute_type=cfg.compute_type,
        cpu_threads=cfg.cpu_threads, workers=workers,
        idle_unload_minutes=cfg.model_idle_unload_minutes, nice=cfg.transcribe_nice,
        idle_class=cfg.transcribe_idle_class)


def options_from_config(cfg) -> stages.TranscribeOptions:
    return stages.TranscribeOptions(
        language=None if cfg.language == "auto" else cfg.language, beam_size=cfg.beam_size,
        vad=cfg.vad, batch_size=cfg.batch_size,
        batch_min_audio_seconds=cfg.batch_min_audio_seconds)


class JobHooks:
    """What the caller does around the stages. The defaults do nothing; `stage` is the one
    running (for the reason code of an unexpected error)."""

    stage = "probe"

    def timed(self, stage: str, fn, *args):
        self.stage = stage
        return fn(*args)

    def probed(self, probe: stages.ProbeResult) -> None: ...
    def decoded(self, audio_seconds: float) -> None: ...
    def transcribed(self, transcript: Transcript) -> None: ...

    def progressed(self, ratio: float, passes_before: int) -> None:
        """`ratio` of the audio transcribed in this pass; `passes_before`: 1 in the re-run."""

    def rerun(self, findings: list[str]) -> None:
        """The guard distrusts the first result: it is transcribed again with safer settings."""

    def should_stop(self) -> bool:
        return False

    def before_commit(self) -> None:
        """Before each output is renamed into place; raising leaves the target untouched."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    transcript: Transcript
    outputs: list[str]
    findings: tuple[str, ...] = ()   # the guard's, when it re-ran (also in transcript.suspect)


class Runner:
    def __init__(self, cfg, model: ModelManager, options: stages.TranscribeOptions,
                 output_dir: Path | None):
        self.cfg = cfg
        self.model = model
        self.options = options
        self.output_dir = output_dir

    @property
    def target_language(self) -> str | None:
        """Known before transcription when forced, or when the model only speaks English."""
        if self.options.language:
            return self.options.language
        if self.model.name.endswith(".en"):
            return "en"
        return None

    def run(self, path: Path, root: Path, hooks: JobHooks, *, own_outputs=(),
            checked_before_reading: bool = True) -> RunResult:
        """Raises `SkipJob`, `StageError` or `stages.Cancelled`. `checked_before_reading`: the
        caller (intake) already asked the policy's BEFORE_READING rules."""
        facts = skip_policy.Facts(path, root, self.target_language, self.output_dir,
                                  own_outputs=tuple(own_outputs))
        if not checked_before_reading:
            skip_policy.check(skip_policy.BEFORE_READING, self.cfg, facts)
        probe = hooks.timed("probe", stages.probe, path)
        hooks.probed(probe)
        skip_policy.check(skip_policy.PROBED, self.cfg, dataclasses.replace(facts, probe=probe))
        audio = hooks.timed("decode", stages.decode, path)
        hooks.decoded(len(audio) / stages.SAMPLE_RATE)
        transcript, findings = hooks.timed("transcribe", self._transcribe, audio, hooks)
        del audio
        hooks.transcribed(transcript)
        skip_policy.check(skip_policy.TRANSCRIBED, self.cfg,
                          dataclasses.replace(facts, probe=probe, transcript=transcript))
        if not path.exists():
            raise StageError("vanished", f"{path}: the file was removed during the job", "write")
        targets = output_paths(path, root, transcript.language, self.cfg.output_formats,
                               self.output_dir)
        outputs = hooks.timed("write", stages.write, transcript, targets, hooks.before_commit)
        return RunResult(transcript, outputs, findings)

    def _transcribe(self, audio, hooks: JobHooks) -> tuple[Transcript, tuple[str, ...]]:
        try:
            use = self.model.use()
            model = use.__enter__()   # entered here so a load failure is the job's reason code
        except Exception as e:
            raise StageError("model_load_failed",
                             f"model {self.model.name} failed to load: {e}") from None
        with contextlib.ExitStack() as held:
            held.push(use)
            duration = len(audio) / stages.SAMPLE_RATE
            batched = (self.model.batched(model) if self.options.batch_size
                       and duration >= self.options.batch_min_audio_seconds else None)

            def run(safer: bool) -> Transcript:
                return stages.transcribe(
                    model, audio, self.options, batched_pipeline=batched,
                    model_name=self.model.name, safer=safer,
                    on_progress=lambda p: hooks.progressed(p, int(safer)),
                    should_stop=hooks.should_stop)

            transcript = run(False)
            findings = check_transcript(transcript)
            if not findings:
                return transcript, ()
            # Whisper loops and invents text on music and silence; one re-run with safer
            # settings usually fixes it. Either way the result says what was seen.
            log.warning("suspect transcript (%s): re-running with safer settings",
                        "; ".join(findings))
            hooks.rerun(findings)
            transcript = run(True)
            after = check_transcript(transcript)
            flagged = [f"first run: {f}" for f in findings] + [f"after re-run: {f}" for f in after]
            return dataclasses.replace(transcript, suspect=tuple(flagged)), tuple(findings)
