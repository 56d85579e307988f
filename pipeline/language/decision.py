"""Which language a file is transcribed in: a chain of evidence, best first, each step recorded.

1. `forced`: the deepest `folder_languages` folder the file is under, else a `language` setting
   other than `auto` (the user knows best);
2. `tag`: the chosen audio track's language tag (`ger`, `deu`, `de` → `de`; `und` or none:
   no answer) — Bazarr too trusts tags over listening;
   `hint`: what Sonarr or Radarr said when it imported the file (pipeline/arr/: the series' or
   movie's original language, its audio languages), stored with the job. Weaker than a tag:
   an English-only model is not overruled by a hint of another language (a dub is likely);
3. `model`: an English-only model (`*.en`) can only write English: no detection. A file whose
   tag (or forced language) says another language is skipped as `language_mismatch` instead of
   getting English-looking nonsense named `.en.srt`;
4. `vote`: detection over windows of speech across the file (`language.vote_language`);
5. below `language_min_confidence`, `language_uncertain_action`: skip as `language_uncertain`,
   or `default` (`default_language`).

Steps 1-3 (the hint included) need no audio (`decide_before_audio`), so the skip rules can use
the language before the file is decoded; step 4 runs only when they gave no answer
(`decide_by_vote`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from .. import skip_policy
from ..contract import LANGUAGE_SOURCES
from ..errors import SkipJob
from ..media.tracks import AudioTrack
from .codes import UNKNOWN, language_label, to_iso639_1
from .vote import LanguageDecision


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """The settings the chain reads (from `Config`: `ChainSettings.from_config`)."""
    language: str | None = None                 # the `language` setting; None: auto
    folder_languages: tuple[tuple[str, str], ...] = ()   # (absolute folder, Whisper code)
    english_only: bool = False                  # the model is `*.en`
    min_confidence: float = 0.6
    uncertain_action: str = "skip"              # skip | default
    default_language: str = "en"

    @classmethod
    def from_config(cls, cfg, model_name: str) -> "ChainSettings":
        folders = tuple(sorted(((os.path.abspath(os.path.expanduser(folder)),
                                 to_iso639_1(code) or UNKNOWN)
                                for folder, code in cfg.folder_languages.items()),
                               key=lambda fc: -len(fc[0])))   # deepest first
        return cls(language=None if cfg.language == "auto" else to_iso639_1(cfg.language),
                   folder_languages=folders, english_only=model_name.endswith(".en"),
                   min_confidence=cfg.language_min_confidence,
                   uncertain_action=cfg.language_uncertain_action,
                   default_language=to_iso639_1(cfg.default_language) or "en")

    def certain_decisions(self) -> tuple[tuple[str, str], ...]:
        """The (language, source) pairs these settings will surely decide: their series exist
        from the start, so `increase()` sees their first decisions too (a series created by its
        first increment would hide it)."""
        pairs = {(code, "forced") for _folder, code in self.folder_languages}
        if self.language:
            pairs.add((self.language, "forced"))
        if self.english_only:
            pairs.add(("en", "model"))
        if self.uncertain_action == "default":
            pairs.add((self.default_language, "default"))
        return tuple(sorted(pairs))


@dataclasses.dataclass(frozen=True)
class Hint:
    """What an import says of a file's language (pipeline/arr/), the chain's `hint` step."""
    language: str          # Whisper's code
    note: str              # where it came from: the job's steps and the log

    def as_dict(self) -> dict[str, str]:
        return {"language": self.language, "note": self.note}

    @classmethod
    def from_dict(cls, stored: dict | None) -> "Hint | None":
        """From the job's `language_hint` column; None when there is none (or not readable)."""
        if not isinstance(stored, dict) or not isinstance(stored.get("language"), str):
            return None
        return cls(stored["language"], str(stored.get("note", "")))


@dataclasses.dataclass(frozen=True)
class Step:
    """One link of the chain as it was asked: what it said (None: no answer) and why."""
    source: str                   # forced | tag | hint | model | vote | default
    language: str | None
    probability: float | None
    note: str


@dataclasses.dataclass(frozen=True)
class LanguageChoice:
    language: str                 # Whisper's code, or `unknown`
    source: str                   # one of LANGUAGE_SOURCES
    probability: float            # 1.0 for forced, tag, hint, model; the vote's share otherwise
    steps: tuple[Step, ...]       # every step asked, in order
    skip: SkipJob | None = None   # language_mismatch / language_uncertain: do not transcribe
    vote: LanguageDecision | None = None

    def __post_init__(self):
        assert self.source in LANGUAGE_SOURCES, self.source

    @property
    def summary(self) -> str:
        return "; ".join(f"{s.source}: {s.language or '-'} ({s.note})" for s in self.steps)


def forced_language(settings: ChainSettings, path: Path) -> tuple[str, str] | None:
    """(language, why) when the user fixed the language for this file, else None."""
    where = os.path.abspath(path)
    for folder, code in settings.folder_languages:
        if where == folder or where.startswith(folder.rstrip(os.sep) + os.sep):
            return code, f"folder_languages {folder}"
    if settings.language:
        return settings.language, "language setting"
    return None


def target_before_reading(settings: ChainSettings, path: Path) -> str | None:
    """The language known from the settings alone (forced, or English for a `*.en` model), so
    the skip rules can look for its subtitle before the file is read."""
    forced = forced_language(settings, path)
    if forced is not None:
        return forced[0]
    return "en" if settings.english_only else None


def decide_before_audio(settings: ChainSettings, path: Path, track: AudioTrack | None,
                        hint: Hint | None = None
                        ) -> tuple[LanguageChoice | None, tuple[Step, ...]]:
    """Steps 1-3: (the choice, the steps asked). No choice when the audio must be listened to
    (`decide_by_vote`, with these steps). `hint`: the job's, from an import."""
    found = _before_audio(settings, path, track, hint)
    if isinstance(found, LanguageChoice):
        return found, found.steps
    return None, found


def _before_audio(settings: ChainSettings, path: Path, track: AudioTrack | None,
                  hint: Hint | None) -> LanguageChoice | tuple[Step, ...]:
    steps: list[Step] = []
    forced = forced_language(settings, path)
    if forced is not None:
        language, why = forced
        steps.append(Step("forced", language, 1.0, why))
        choice = LanguageChoice(language, "forced", 1.0, tuple(steps))
        return _english_only_check(settings, path, choice, "forced")
    steps.append(Step("forced", None, None, "no folder_languages entry, language: auto"))
    tag = track.tag if track is not None else None
    if track is not None and track.language:
        steps.append(Step("tag", track.language, 1.0, f"audio stream {track.index} tagged {tag!r}"))
        choice = LanguageChoice(track.language, "tag", 1.0, tuple(steps))
        return _english_only_check(settings, path, choice, "tag")
    steps.append(Step("tag", None, None, f"audio stream tagged {tag!r}" if tag
                      else "audio stream untagged"))
    if hint is not None:
        if not settings.english_only or hint.language == "en":
            steps.append(Step("hint", hint.language, 1.0, hint.note))
            return LanguageChoice(hint.language, "hint", 1.0, tuple(steps))
        steps.append(Step("hint", None, None, f"{hint.note}: not English, and the model writes "
                                              "English only; the model decides"))
    if settings.english_only:
        steps.append(Step("model", "en", 1.0, "English-only model: no detection"))
        return LanguageChoice("en", "model", 1.0, tuple(steps))
    return tuple(steps)


def _english_only_check(settings: ChainSettings, path: Path, choice: LanguageChoice,
                        what: str) -> LanguageChoice:
    if not settings.english_only or choice.language == "en":
        return choice
    # The model would write English words for speech in another language.
    steps = choice.steps + (Step("model", "en", None, "English-only model"),)
    return dataclasses.replace(choice, steps=steps,
                               skip=skip_policy.language_mismatch(path, choice.language, what))


def decide_by_vote(settings: ChainSettings, path: Path, before: tuple[Step, ...],
                   vote: Callable[[], LanguageDecision]) -> LanguageChoice:
    """Steps 4-5: the vote, and what an uncertain one does. A vote that hears no speech is
    skipped as `no_speech`."""
    decision = vote()
    language = language_label(decision.language)
    mix = ", ".join(f"{code} {share:.2f}" for code, share in decision.mix.items())
    steps = before + (Step("vote", language if language != UNKNOWN else None,
                           decision.confidence,
                           f"{len(decision.windows)} windows: {mix or 'no speech'}"),)
    if language == UNKNOWN:
        return LanguageChoice(UNKNOWN, "vote", 0.0, steps, vote=decision,
                              skip=skip_policy.no_speech_to_vote_on(path))
    if decision.source == "model":   # an English-only model not named `*.en` (a folder)
        return LanguageChoice(language, "model", 1.0, steps, vote=decision)
    if decision.confidence >= settings.min_confidence:
        return LanguageChoice(language, "vote", decision.confidence, steps, vote=decision)
    if settings.uncertain_action == "default":
        steps += (Step("default", settings.default_language, decision.confidence,
                       f"vote below {settings.min_confidence:g}: default_language"),)
        return LanguageChoice(settings.default_language, "default", decision.confidence, steps,
                              vote=decision)
    return LanguageChoice(language, "vote", decision.confidence, steps, vote=decision,
                          skip=skip_policy.language_uncertain(
                              path, mix, decision.confidence, settings.min_confidence))
