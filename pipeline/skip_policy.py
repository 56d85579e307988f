"""Every reason not to subtitle a file, in one place. The runner and intake ask; rules answer.

A rule is a function `(settings, facts) -> SkipJob | None`, registered with `@rule(point)` for
the point of a job where it can decide: `BEFORE_READING` (intake, before the file is read: only
the path, and the target language when it is known in advance), `PROBED` (the container's
streams are known), `DECIDED` (the file's language is decided: forced, tag, hint, model or vote,
language/decision.py) or `TRANSCRIBED` (the text is known).

"A subtitle already exists" is always about THE language the job would write: a sidecar
`<stem>.<lang>.<ext>` in any spelling of it (`de`, `ger`, `deu`, `German`), or a subtitle stream
tagged with it. A forced-only subtitle (`Movie.de.forced.srt`, the forced disposition) carries
only signs and foreign lines: it does not count. `settings` is
the `Config` (rules read their own setting from it); `facts` is what is known at that point.

Adding a skip reason: its code in the reason table, its setting in the config, and one
function here under `@rule`.

A few skips can be told by one place only: a stream that decodes to no audio at all (the
decoder: only it can tell that from damage), a language the model cannot write or a vote that
stays uncertain (the language decision), an upload with no speech (the API). Those places raise
what this module makes for them (the functions at the end), so every skip's code and message is
here; tests/unit/pipeline/test_skip_policy.py checks that no other module makes a `SkipJob`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SkipJob
from .subtitles.output import find_sidecar, same_stem_media
from .transcript import Transcript
from .watcher import FileFilter

if TYPE_CHECKING:   # media/reader.py raises this module's skips: the arrow points from it here
    from .media.reader import ProbeResult

BEFORE_READING, PROBED, DECIDED, TRANSCRIBED = ("before_reading", "probed", "decided",
                                                "transcribed")


@dataclasses.dataclass(frozen=True)
class Facts:
    path: Path
    root: Path                              # its watch folder (the file's own folder one-shot)
    target_language: str | None             # known before transcription: forced, or a .en model
    output_dir: Path | None                 # output_mode: output_dir
    # Subtitles this file's job wrote before: replacing them is the job (`retry --path`), not
    # a reason to skip it.
    own_outputs: tuple[str, ...] = ()
    probe: ProbeResult | None = None        # from PROBED on
    language: str | None = None             # from DECIDED on: the language the job writes
    transcript: Transcript | None = None    # at TRANSCRIBED
    # A media file sharing this one's stem whose job ended without a subtitle (failed, or
    # skipped for a reason of its own): it no longer claims the stem (intake asks the store).
    set_aside: Callable[[Path], bool] = lambda sibling: False

    def subtitle_folders(self) -> list[Path]:
        """Where a subtitle for this file is looked for: beside it, and its place in output_dir."""
        folders = [self.path.parent]
        if self.output_dir is not None:
            folders.append(self.output_dir / self.path.parent.relative_to(self.root))
        return folders


Rule = Callable[[Any, Facts], "SkipJob | None"]
RULES: dict[str, list[Rule]] = {BEFORE_READING: [], PROBED: [], DECIDED: [], TRANSCRIBED: []}


def rule(point: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[point].append(fn)
        return fn
    return register


def check(point: str, settings: Any, facts: Facts) -> None:
    """Raise the first rule's `SkipJob` at `point`, in registration order."""
    for fn in RULES[point]:
        if (skip := fn(settings, facts)) is not None:
            raise skip


def _existing_subtitle(facts: Facts, language: str) -> SkipJob | None:
    sidecar = find_sidecar(facts.path, language, facts.subtitle_folders())
    if sidecar is None or str(sidecar) in facts.own_outputs:
        return None
    return SkipJob("subtitle_exists", f"{facts.path}: {sidecar.name} already exists")


# -- the rules ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _file_filter(extensions: tuple[str, ...], ignore_globs: tuple[str, ...]) -> FileFilter:
    return FileFilter(extensions, ignore_globs)   # its globs compiled once, not per file


def stem_claimed_by(settings, facts: Facts) -> Path | None:
    """The other media file with this one's stem that gets the subtitle they would share, or
    None when it is this one (or it has no such sibling). The first of them by the fixed
    preference (`output.same_stem_media`) that is not set aside."""
    if not settings.skip_same_stem:
        return None
    # Only files the watcher takes: an ignored `Movie.mkv` never gets a job, nor a subtitle.
    wanted = _file_filter(settings.include_extensions, settings.ignore_globs).wanted_name
    for candidate in same_stem_media(facts.path, wanted):
        if candidate == facts.path:
            return None
        if not facts.set_aside(candidate):
            return candidate
    return None


@rule(BEFORE_READING)
def subtitle_for_target_language(settings, facts: Facts) -> SkipJob | None:
    """A subtitle in the language we would write is already there. Checked before the file is
    read, so a first start over a subtitled library costs a stat per file, not a read."""
    if not (settings.skip_existing_subtitles and facts.target_language):
        return None   # the language is known only after transcription: checked then
    return _existing_subtitle(facts, facts.target_language)


@rule(BEFORE_READING)
def one_subtitle_per_stem(settings, facts: Facts) -> SkipJob | None:
    """`Movie.mkv` and `Movie.mp4` would both write `Movie.en.srt`; Jellyfin, Plex and Emby show
    a subtitle with every video of its stem. One is transcribed, chosen by name alone, so every
    scan and every node chooses the same; the other is skipped, and taken again by a later scan
    if the chosen one fails or goes (`Intake.is_known`)."""
    chosen = stem_claimed_by(settings, facts)
    if chosen is None:
        return None
    return SkipJob("same_stem", f"{facts.path}: {chosen.name} has the same name; the subtitle "
                                "written for it serves this file too")


def subtitle_in(settings, facts: Facts, language: str, *, sidecars: bool = True
                ) -> SkipJob | None:
    """Why a subtitle in `language` is not needed (a sidecar, or an embedded full subtitle
    stream), or None. Also asked for the English translation (`translate_to_english`)."""
    if (sidecars and settings.skip_existing_subtitles
            and (skip := _existing_subtitle(facts, language))):
        return skip
    if (settings.skip_embedded_subtitles and facts.probe is not None
            and language in facts.probe.subtitle_languages):
        return SkipJob("embedded_subtitle",
                       f"{facts.path}: the container already has a '{language}' subtitle stream")
    return None


@rule(DECIDED)
def subtitle_for_decided_language(settings, facts: Facts) -> SkipJob | None:
    """A subtitle in the decided language is there already, beside the file or inside it. The
    sidecars of a language known before reading were looked for then (intake), not again."""
    if not facts.language:
        return None
    return subtitle_in(settings, facts, facts.language,
                       sidecars=facts.language != facts.target_language)


@rule(TRANSCRIBED)
def no_speech(settings, facts: Facts) -> SkipJob | None:
    transcript = facts.transcript
    if any(s.text.strip() for s in transcript.segments):
        return None
    # An empty subtitle track is useless, and would mark the file as done.
    return SkipJob("no_speech",
                   f"{facts.path}: no speech found ({transcript.duration:.1f}s of audio)")


# -- the skips one place alone can tell: made here, raised there --------------------------------
def empty_audio(path) -> SkipJob:
    """`media.decode`: the stream decodes to no samples at all (nothing claimed, nothing
    damaged): an empty track is useless, so none is written."""
    return SkipJob("no_speech", f"{path}: no speech found (the audio stream is empty)")


def no_speech_to_vote_on(path) -> SkipJob:
    """The language decision: the vote heard no speech in any window."""
    return SkipJob("no_speech", f"{path}: no speech found to detect a language in")


def language_mismatch(path, language: str, what: str) -> SkipJob:
    """The language decision: an English-only model and a file in another language."""
    return SkipJob("language_mismatch", f"{path}: the {what} language is '{language}' but the "
                   "model transcribes English only (choose a multilingual model, e.g. "
                   "`model: base`)")


def language_uncertain(path, mix: str, confidence: float, min_confidence: float) -> SkipJob:
    """The language decision: the vote stayed below `language_min_confidence` and
    `language_uncertain_action` is `skip`."""
    return SkipJob("language_uncertain", f"{path}: language uncertain ({mix}; "
                   f"{confidence:.2f} < {min_confidence:g})")


def no_speech_in_upload() -> SkipJob:
    """The HTTP API: an upload whose transcript has no words (or whose vote heard none)."""
    return SkipJob("no_speech", "no speech found in the upload")
