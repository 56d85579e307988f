"""Sonarr's and Radarr's webhook bodies, built from the classes that make them.

Every field name here is theirs: Newtonsoft's camelCase of the C# properties in
`src/NzbDrone.Core/Notifications/Webhook/` (read through the search tool at Sonarr/Sonarr
49df353 and Radarr/Radarr 1b9662d):
- WebhookPayload.cs: eventType (WebhookEventType.cs: PascalCase names, `Test`, `Download`,
  `Rename`, …, DefaultNamingStrategy), instanceName, applicationUrl;
- Sonarr WebhookImportPayload.cs: series, episodes, episodeFile, isUpgrade, downloadClient,
  downloadClientType, downloadId, deletedFiles, customFormatInfo, release;
  WebhookImportCompletePayload (WebhookBase.BuildOnImportCompletePayload): episodeFiles[];
- Sonarr WebhookSeries.cs: id, title, titleSlug, path, tvdbId, tvMazeId, tmdbId, imdbId, type,
  year, genres, images, tags, originalLanguage (Language.cs: {id, name}), originalCountry;
- Sonarr WebhookEpisodeFile.cs: id, relativePath, path, quality, qualityVersion, releaseGroup,
  sceneName, size, dateAdded, languages, mediaInfo, sourcePath, recycleBinPath;
  WebhookEpisodeFileMediaInfo.cs: audioChannels, audioCodec, audioLanguages (List<string>, the
  streams' tags: VideoFileInfoReader.cs gives ffprobe's `eng`, `und`, …), height, width,
  subtitles, videoCodec, videoDynamicRange, videoDynamicRangeType;
- Sonarr WebhookRenamePayload.cs: series, renamedEpisodeFiles (WebhookRenamedEpisodeFile.cs: a
  WebhookEpisodeFile plus previousRelativePath, previousPath);
- Radarr WebhookImportPayload.cs: movie, remoteMovie, movieFile, isUpgrade, downloadClient,
  downloadClientType, downloadId, deletedFiles, customFormatInfo, release;
- Radarr WebhookMovie.cs: id, title, year, filePath, releaseDate, folderPath, tmdbId, imdbId,
  overview, genres, images, tags, originalLanguage; WebhookMovieFile.cs: as Sonarr's episode
  file plus indexerFlags; WebhookMovieFileMediaInfo.cs: audioLanguages as Sonarr's;
- Radarr WebhookRenamePayload.cs: movie, renamedMovieFiles (WebhookRenamedMovieFile.cs);
- the Test payloads (WebhookBase.BuildTestPayload): a Grab-shaped body with eventType `Test`,
  `series`/`movie` path "C:\\testpath", no file.
"""

from __future__ import annotations

import base64
import json
import os
import types
import urllib.error
import urllib.request
from pathlib import Path

from scribewatch.pipeline.arr.webhooks import ArrWebhooks
from scribewatch.pipeline.config import DEFAULT_IGNORE, MEDIA_EXTENSIONS
from scribewatch.pipeline.intake import Intake
from scribewatch.pipeline.libraries import Libraries
from scribewatch.pipeline.notify.paths import PathMap

JAPANESE = {"id": 8, "name": "Japanese"}
ENGLISH = {"id": 1, "name": "English"}


def webhooks_over(store, library: Path, path_map: dict[str, str]) -> ArrWebhooks:
    """The daemon's intake and Sonarr/Radarr webhooks over one library (the folder `library`),
    with the Config's default skip settings; `path_map` as the setting (local → theirs)."""
    settings = types.SimpleNamespace(
        skip_existing_subtitles=True, skip_same_stem=True, include_extensions=MEDIA_EXTENSIONS,
        ignore_globs=DEFAULT_IGNORE)
    libraries = Libraries({str(library): str(library)})
    intake = Intake(store, settings=settings, target_language=lambda path: "en",
                    output_dir=None, on_queued=lambda: None, libraries=libraries)
    return ArrWebhooks(store, intake, libraries, PathMap(path_map), None)


def media_info(audio_languages) -> dict:
    return {"audioChannels": 2.0, "audioCodec": "AAC", "audioLanguages": audio_languages,
            "height": 1080, "width": 1920, "subtitles": [], "videoCodec": "x264",
            "videoDynamicRange": "", "videoDynamicRangeType": ""}


def episode_file(path: str, series_path: str, audio=("jpn",), **extra) -> dict:
    return {"id": 11, "relativePath": os.path.relpath(path, series_path), "path": path,
            "quality": "WEBDL-1080p", "qualityVersion": 1, "releaseGroup": "GRP",
            "sceneName": None, "size": 1000, "dateAdded": "2026-12-07T10:00:00Z",
            "languages": [JAPANESE], "mediaInfo": media_info(list(audio)), **extra}


def series(path: str, original=JAPANESE) -> dict:
    return {"id": 1, "title": "Show", "titleSlug": "show", "path": path, "tvdbId": 1234,
            "tvMazeId": 0, "tmdbId": 0, "imdbId": "tt1", "type": "standard", "year": 2020,
            "genres": ["Drama"], "images": [], "tags": [], "originalLanguage": original,
            "originalCountry": "jp"}


def _download(instance: str, upgrade: bool, client: str, title: str) -> dict:
    """What WebhookImportPayload has in both apps besides the media and its file."""
    return {"eventType": "Download", "instanceName": instance, "applicationUrl": "",
            "isUpgrade": upgrade, "downloadClient": client, "downloadClientType": client,
            "downloadId": "ABC", "customFormatInfo": {"customFormats": [],
                                                      "customFormatScore": 0},
            "release": {"releaseTitle": title, "indexer": "x", "size": 1000}}


def sonarr_download(path: str, series_path: str, *, upgrade_of: list[str] = (),
                    original=JAPANESE, audio=("jpn",)) -> dict:
    doc = {**_download("Sonarr", bool(upgrade_of), "qBittorrent", "Show.S01E01"),
           "series": series(series_path, original),
           "episodes": [{"id": 123, "episodeNumber": 1, "seasonNumber": 1, "title": "Pilot"}],
           "episodeFile": episode_file(path, series_path, audio, sourcePath="/downloads/x.mkv")}
    if upgrade_of:
        doc["deletedFiles"] = [episode_file(p, series_path, audio,
                                            recycleBinPath="/recycle/" + os.path.basename(p))
                               for p in upgrade_of]
    return doc


def _rename(instance: str, owner: tuple[str, dict], renamed: str, file, folder: str,
            moves: list[tuple[str, str]]) -> dict:
    """WebhookRenamePayload: the series or movie, and each renamed file (WebhookRenamed…File:
    the file as it is now, plus previousPath and previousRelativePath)."""
    return {"eventType": "Rename", "instanceName": instance, "applicationUrl": "",
            owner[0]: owner[1],
            renamed: [{**file(new, folder), "previousPath": old,
                       "previousRelativePath": os.path.relpath(old, folder)}
                      for old, new in moves]}


def sonarr_rename(series_path: str, moves: list[tuple[str, str]]) -> dict:
    return _rename("Sonarr", ("series", series(series_path)), "renamedEpisodeFiles",
                   episode_file, series_path, moves)


def sonarr_test() -> dict:
    return {"eventType": "Test", "instanceName": "Sonarr", "applicationUrl": "",
            "series": {"id": 1, "title": "Test Title", "path": "C:\\testpath", "tvdbId": 1234,
                       "tags": ["test-tag"]},
            "episodes": [{"id": 123, "episodeNumber": 1, "seasonNumber": 1,
                          "title": "Test title"}]}


def movie(folder: str, original=ENGLISH) -> dict:
    return {"id": 1, "title": "Film", "year": 2001, "releaseDate": "2001-01-01",
            "folderPath": folder, "tmdbId": 603, "imdbId": "tt0133093", "overview": "",
            "genres": [], "images": [], "tags": [], "originalLanguage": original}


def movie_file(path: str, folder: str, audio=("eng",), **extra) -> dict:
    return {"id": 21, "relativePath": os.path.relpath(path, folder), "path": path,
            "quality": "Bluray-1080p", "qualityVersion": 1, "releaseGroup": "GRP",
            "sceneName": None, "indexerFlags": "0", "size": 1000,
            "dateAdded": "2026-12-07T10:00:00Z", "languages": [ENGLISH],
            "mediaInfo": media_info(list(audio)), **extra}


def radarr_download(path: str, folder: str, *, upgrade_of: list[str] = (), original=ENGLISH,
                    audio=("eng",)) -> dict:
    doc = {**_download("Radarr", bool(upgrade_of), "SABnzbd", "Film.2001"),
           "movie": {**movie(folder, original), "filePath": path},
           "remoteMovie": {"tmdbId": 603, "imdbId": "tt0133093", "title": "Film", "year": 2001},
           "movieFile": movie_file(path, folder, audio, sourcePath="/downloads/film.mkv")}
    if upgrade_of:
        doc["deletedFiles"] = [movie_file(p, folder, audio) for p in upgrade_of]
    return doc


def radarr_rename(folder: str, moves: list[tuple[str, str]]) -> dict:
    return _rename("Radarr", ("movie", movie(folder)), "renamedMovieFiles", movie_file, folder,
                   moves)


def radarr_test() -> dict:
    return {"eventType": "Test", "instanceName": "Radarr", "applicationUrl": "",
            "movie": {"id": 1, "title": "Test Title", "year": 1970, "folderPath": "C:\\testpath",
                      "releaseDate": "1970-01-01", "tags": ["test-tag"]},
            "remoteMovie": {"tmdbId": 1234, "imdbId": "5678", "title": "Test title",
                            "year": 1970},
            "release": {"indexer": "Test Indexer", "quality": "Test Quality",
                        "qualityVersion": 1, "releaseGroup": "Test Group",
                        "releaseTitle": "Test Title", "size": 9999999}}


def post_hook(url: str, app: str, doc: dict, user: str | None = None,
              password: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """POST as their WebhookProxy does: JSON, `Accept: application/json`, basic auth from the
    Username/Password fields (sent up front: ManagedHttpDispatcher), custom headers."""
    request = urllib.request.Request(f"{url}/hooks/{app}", data=json.dumps(doc).encode(),
                                     method="POST", headers={
                                         "Content-Type": "application/json",
                                         "Accept": "application/json", **(headers or {})})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"raw": body.decode(errors="replace")}
