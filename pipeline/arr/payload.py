"""Sonarr's and Radarr's webhook JSON, read into typed events.

Field names are theirs (camelCase JSON of the classes in
`src/NzbDrone.Core/Notifications/Webhook/` of Sonarr/Sonarr and Radarr/Radarr):
- every payload: `eventType` (`Test`, `Download`, `Rename`, … in PascalCase), `instanceName`;
- Sonarr `Download` (WebhookImportPayload): `series` (`path`, `originalLanguage`),
  `episodeFile` (`path`, `relativePath`, `mediaInfo.audioLanguages`), `isUpgrade`,
  `deletedFiles[]` (`path`); "On Import Complete" (WebhookImportCompletePayload) sends the same
  event with `episodeFiles[]` instead of `episodeFile`;
- Radarr `Download`: `movie` (`folderPath`, `originalLanguage`), `movieFile` (`path`, …),
  `isUpgrade`, `deletedFiles[]`;
- `Rename` (WebhookRenamePayload): Sonarr `renamedEpisodeFiles[]`, Radarr `renamedMovieFiles[]`,
  each a file with `path` and `previousPath`.

`originalLanguage` is a Language object (`{"id": 8, "name": "Japanese"}`); `audioLanguages` is
a list of the streams' tags (`["jpn", "eng"]`, ffprobe's ISO 639-2) in current releases and was
one string (`"Japanese / English"`) in older ones: both are read.
"""

from __future__ import annotations

import dataclasses

from ..language.codes import to_iso639_1
from ..language.decision import Hint

APPS = {"sonarr": ("series", "episodeFile", "episodeFiles", "renamedEpisodeFiles"),
        "radarr": ("movie", "movieFile", "movieFiles", "renamedMovieFiles")}
TITLE = {"sonarr": "Sonarr", "radarr": "Radarr"}


class BadPayload(ValueError):
    """Not a webhook of this app, or a field missing or of the wrong type (a 400)."""


@dataclasses.dataclass(frozen=True)
class ImportedFile:
    path: str                               # as Sonarr/Radarr sees it (before path_map)
    hint: Hint | None


@dataclasses.dataclass(frozen=True)
class Imported:
    """`Download`: files imported (`upgrade`: replacing `deleted`, the files removed)."""
    files: tuple[ImportedFile, ...]
    upgrade: bool
    deleted: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Renamed:
    """`Rename`: (previous path, path) per file."""
    moves: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Other:
    """`Test`, and the events scribewatch does nothing with (Grab, Health, …)."""
    event_type: str


Event = Imported | Renamed | Other


def parse(app: str, doc) -> Event:
    if app not in APPS:
        raise BadPayload(f"unknown app {app!r}")
    if not isinstance(doc, dict):
        raise BadPayload("the body is not a JSON object")
    event_type = doc.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise BadPayload("no eventType")
    media, file_key, files_key, renamed_key = APPS[app]
    if event_type == "Download":
        owner = _object(doc, media)
        files = _list(doc, files_key) if files_key in doc and file_key not in doc \
            else [_object(doc, file_key)]
        original = _original_language(owner)
        return Imported(
            files=tuple(ImportedFile(_path(f, file_key), _hint(app, media, original, f))
                        for f in files),
            upgrade=bool(doc.get("isUpgrade")),
            deleted=tuple(_path(f, "deletedFiles") for f in _list(doc, "deletedFiles")))
    if event_type == "Rename":
        moves = []
        for f in _list(doc, renamed_key):
            previous = f.get("previousPath")
            if not isinstance(previous, str) or not previous:
                raise BadPayload(f"{renamed_key}[]: no previousPath")
            moves.append((previous, _path(f, renamed_key)))
        return Renamed(tuple(moves))
    return Other(event_type)


def _object(doc: dict, key: str) -> dict:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise BadPayload(f"no {key} object")
    return value


def _list(doc: dict, key: str) -> list[dict]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadPayload(f"{key}: expected a list of objects")
    return value


def _path(file: dict, where: str) -> str:
    path = file.get("path")
    if not isinstance(path, str) or not path:
        raise BadPayload(f"{where}: no path")
    return path


def _original_language(owner: dict) -> str | None:
    """Whisper's code for `originalLanguage` ({"id", "name"}); None for Unknown, Any, …"""
    language = owner.get("originalLanguage")
    name = language.get("name") if isinstance(language, dict) else language
    if not isinstance(name, str):
        return None
    return to_iso639_1(name.split("(")[0])   # "Portuguese (Brazil)" -> pt


def audio_languages(file: dict) -> list[str]:
    """The file's audio languages Whisper knows, in order, each once: a list of tags (current
    releases) or one "English / Japanese" string (older ones); `und` and the like dropped."""
    info = file.get("mediaInfo")
    value = info.get("audioLanguages") if isinstance(info, dict) else None
    if isinstance(value, str):
        value = value.split("/")
    if not isinstance(value, list):
        return []
    codes = (to_iso639_1(v) for v in value if isinstance(v, str))
    return list(dict.fromkeys(c for c in codes if c))


def _hint(app: str, media: str, original: str | None, file: dict) -> Hint | None:
    """The original language when the file's audio has it (or its audio is unknown); else the
    file's one known audio language; else nothing (a dub in several languages, none of them
    the original: the chain listens)."""
    audio = audio_languages(file)
    heard = f"audioLanguages {'/'.join(audio)}" if audio else "audioLanguages unknown"
    if original and (not audio or original in audio):
        return Hint(original, f"{TITLE[app]}: {media}.originalLanguage {original}, {heard}")
    if len(audio) == 1:
        return Hint(audio[0], f"{TITLE[app]}: {heard} (originalLanguage "
                              f"{original or 'unknown'})")
    return None
