"""One job's path through the stages: probe → decode → transcribe → write, with the skip policy
asked at each point and the hallucination guard's re-run. Used by the daemon's workers and by
`scribewatch transcribe`; what differs between them (the store, metrics, a progress bar) comes
in through `JobHooks`. Retries, recovery and shutdown are the daemon's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from pathlib import Path

from .. import skip_policy, stages
from ..errors import GpuOutOfMemory, StageError
from ..guards import check_transcript
from ..language import decision as language_chain
from ..language.decision import ChainSettings, Hint, LanguageChoice
from ..language.vote import vote_language
from ..media.tracks import choose_audio_track
from ..model import ModelManager
from ..subtitles.output import output_paths
from ..transcript import Transcript

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
        batch_min_audio_seconds=cfg.batch_min_audio_seconds, temperature=cfg.temperature)


class JobHooks:
    """What the caller does around the stages. The defaults do nothing; `stage` is the one
    running (for the reason code of an unexpected error)."""

    stage = "probe"

    def timed(self, stage: str, fn, *args):
        self.stage = stage
        return fn(*args)

    def done_before(self, stage: str, result, start: float, end: float):
        """`stage` ran before the job was claimed (the prefetch), from `start` to `end` (unix
        time): its result."""
        self.stage = stage
        return result

    def probed(self, probe: stages.ProbeResult) -> None: ...
    def decoded(self, audio_seconds: float) -> None: ...
    def transcribed(self, transcript: Transcript) -> None: ...

    def language_decided(self, choice: LanguageChoice) -> None:
        """The file's language (and how it was decided), before a skip it may cause."""

    def progressed(self, ratio: float, passes_before: int) -> None:
        """`ratio` of the audio transcribed in this pass; `passes_before`: 1 in the re-run."""

    def rerun(self, findings: list[str]) -> None:
        """The guard distrusts the first result: it is transcribed again with safer settings."""

    def should_stop(self) -> bool:
        return False

    def writing(self, outputs: list[str]) -> None:
        """These subtitles are about to be renamed into place: they are the job's own from
        now on (a re-run after a death before the job's end replaces them, not skips them)."""

    def before_commit(self) -> None:
        """Before each output is renamed into place; raising leaves the target untouched."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    transcript: Transcript
    outputs: list[str]
    findings: tuple[str, ...] = ()   # the guard's, when it re-ran (also in transcript.suspect)
    choice: LanguageChoice | None = None
    translation: list[str] = dataclasses.field(default_factory=list)   # <stem>.en.* written


class Runner:
    def __init__(self, cfg, model: ModelManager, options: stages.TranscribeOptions,
                 output_dir: Path | None):
        self.cfg = cfg
        self.model = model
        self.options = options
        self.output_dir = output_dir

    @functools.cached_property
    def chain(self) -> ChainSettings:
        return ChainSettings.from_config(self.cfg, self.model.name)

    def target_language(self, path: Path) -> str | None:
        """Known before reading: forced (by folder or setting), or English for a `*.en` model."""
        return language_chain.target_before_reading(self.chain, path)

    def run(self, path: Path, root: Path, hooks: JobHooks, *, own_outputs=(),
            checked_before_reading: bool = True, prefetched=None,
            hint: Hint | None = None) -> RunResult:
        """Raises `SkipJob`, `StageError` or `stages.Cancelled`. `checked_before_reading`: the
        caller (intake) already asked the policy's BEFORE_READING rules. `prefetched`: this
        file's probe, audio and VAD done ahead (`prefetch.Prefetched`). `hint`: what Sonarr or
        Radarr said of its language (the chain's `hint` step)."""
        facts = skip_policy.Facts(path, root, self.target_language(path), self.output_dir,
                                  own_outputs=tuple(own_outputs))
        if not checked_before_reading:
            skip_policy.check(skip_policy.BEFORE_READING, self.cfg, facts)
        ahead = prefetched.spans if prefetched else {}
        probe = (hooks.done_before("probe", prefetched.probe, *ahead["probe"]) if prefetched
                 else hooks.timed("probe", stages.probe, path))
        hooks.probed(probe)
        facts = dataclasses.replace(facts, probe=probe)
        skip_policy.check(skip_policy.PROBED, self.cfg, facts)
        track = choose_audio_track(probe.audio_tracks, tuple(self.cfg.preferred_audio_languages))
        choice, asked = language_chain.decide_before_audio(self.chain, path, track, hint)
        if choice is not None:   # known without listening: skip before decoding
            facts = self._decided(choice, facts, hooks)
        index = track.index if track else None
        speech = None
        if prefetched and prefetched.track_index == index:   # the same track was read ahead
            audio = hooks.done_before("decode", prefetched.audio, *ahead["decode"])
            speech = prefetched.speech
        else:
            audio = hooks.timed("decode", stages.decode, path, index)
        prefetched = None   # its audio is freed with `audio`
        hooks.decoded(len(audio) / stages.SAMPLE_RATE)
        transcript, findings, choice, facts = hooks.timed(
            "transcribe", self._transcribe, audio, hooks, choice, asked, facts, speech)
        hooks.transcribed(transcript)
        skip_policy.check(skip_policy.TRANSCRIBED, self.cfg,
                          dataclasses.replace(facts, transcript=transcript))
        if not path.exists():
            raise StageError("vanished", f"{path}: the file was removed during the job", "write")
        written = self._write(transcript, path, root, hooks)
        if self._translation_only(choice):   # the transcript is the English translation
            return RunResult(transcript, [], findings, choice, written)
        translation = []
        if self._wants_translation(choice, facts):
            english = hooks.timed("transcribe", self._translate, audio, hooks, choice,
                                  transcript.speech)
            translation = self._write(english, path, root, hooks)
        return RunResult(transcript, written, findings, choice, translation)

    def _write(self, transcript: Transcript, path: Path, root: Path, hooks) -> list[str]:
        targets = output_paths(path, root, transcript.language, self.cfg.output_formats,
                               self.output_dir)
        hooks.writing([str(t) for t in targets.values()])
        return hooks.timed("write", functools.partial(stages.write, max_cps=self.cfg.max_cps,
                                                      before_commit=hooks.before_commit),
                           transcript, targets)

    def _decided(self, choice: LanguageChoice, facts: skip_policy.Facts,
                 hooks: JobHooks) -> skip_policy.Facts:
        """Record the decision; raise its skip, or the skip policy's for that language."""
        log.info("%s: language %s from %s (%.2f) [%s]", facts.path, choice.language,
                 choice.source, choice.probability, choice.summary)
        hooks.language_decided(choice)
        if choice.skip is not None:
            raise choice.skip
        # The language of what will be written: the skip rules look for that subtitle.
        written = "en" if self._translation_only(choice) else choice.language
        facts = dataclasses.replace(facts, language=written)
        skip_policy.check(skip_policy.DECIDED, self.cfg, facts)
        return facts

    def _translation_only(self, choice: LanguageChoice) -> bool:
        """`write_original_language: false`: a file in another language gets English only."""
        return (not self.cfg.write_original_language and self.cfg.translate_to_english
                and not self.chain.english_only and choice.language not in ("en", "unknown"))

    def _wants_translation(self, choice: LanguageChoice, facts: skip_policy.Facts) -> bool:
        if not self.cfg.translate_to_english or choice.language in ("en", "unknown"):
            return False
        if self.chain.english_only:
            return False   # cannot happen (its files are English or skipped); never translate
        skip = skip_policy.subtitle_in(self.cfg, facts, "en")
        if skip is not None:
            log.info("no English translation: %s", skip.message)
            return False
        return True

    def _translate(self, audio, hooks: JobHooks, choice: LanguageChoice,
                   speech=None) -> Transcript:
        """Whisper's translate task: English text for speech in `choice.language` (`speech`:
        the VAD's findings on this audio, from the transcription)."""
        options = dataclasses.replace(self.options, language=choice.language, task="translate")
        with self._model() as model:
            transcript = stages.transcribe(
                model, audio, options, model_name=self.model.name,
                on_progress=lambda p: hooks.progressed(p, 2), should_stop=hooks.should_stop,
                speech=speech)
        return dataclasses.replace(transcript, language="en",
                                   language_probability=choice.probability)

    @contextlib.contextmanager
    def _model(self):
        try:
            use = self.model.use()
            model = use.__enter__()   # entered here so a load failure is the job's reason code
        except GpuOutOfMemory:
            raise   # the daemon shrinks or waits; not the file's failure
        except Exception as e:
            raise StageError("model_load_failed",
                             f"model {self.model.name} failed to load: {e}") from None
        with contextlib.ExitStack() as held:
            held.push(use)
            yield model

    def _transcribe(self, audio, hooks: JobHooks, choice: LanguageChoice | None, asked,
                    facts: skip_policy.Facts, speech=None):
        """(transcript, the guard's findings, the language choice, facts). The vote runs here
        when the settings and tags did not decide: it needs the model. `speech`: what the
        prefetch's VAD found in this audio (`speech.Speech`)."""
        with self._model() as model:
            if choice is None:
                choice = language_chain.decide_by_vote(
                    self.chain, facts.path, asked,
                    lambda: vote_language(model, audio,
                                          uncertain_below=self.chain.min_confidence))
                facts = self._decided(choice, facts, hooks)
            only_english = self._translation_only(choice)
            options = dataclasses.replace(self.options, language=choice.language,
                                          task="translate" if only_english else "transcribe")
            duration = len(audio) / stages.SAMPLE_RATE
            batched = (self.model.batched(model) if options.batch_size
                       and duration >= options.batch_min_audio_seconds else None)

            def run(safer: bool) -> Transcript:
                transcript = stages.transcribe(
                    model, audio, options, batched_pipeline=batched,
                    model_name=self.model.name, safer=safer,
                    on_progress=lambda p: hooks.progressed(p, int(safer)),
                    should_stop=hooks.should_stop, speech=speech)
                return dataclasses.replace(
                    transcript, language="en" if only_english else choice.language,
                    language_probability=choice.probability)

            transcript = run(False)
            speech = transcript.speech   # the re-run hears the same audio: no second VAD
            findings = check_transcript(transcript)
            if not findings:
                return transcript, (), choice, facts
            # Whisper loops and invents text on music and silence; one re-run with safer
            # settings usually fixes it. Either way the result says what was seen.
            log.warning("suspect transcript (%s): re-running with safer settings",
                        "; ".join(findings))
            hooks.rerun(findings)
            transcript = run(True)
            after = check_transcript(transcript)
            flagged = [f"first run: {f}" for f in findings] + [f"after re-run: {f}" for f in after]
            return (dataclasses.replace(transcript, suspect=tuple(flagged)), tuple(findings),
                    choice, facts)
