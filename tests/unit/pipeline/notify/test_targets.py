"""Each notification target's request, checked on the wire against the documented API.

Jellyfin, Emby and Plex cannot run here, so a local HTTP server (tests/harness/http_recorder.py)
records what the real client code sends, and every assertion names the documentation page it
comes from (the facts, with more sources: docs/dev/integration-facts.md, sections 4 and 5).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse

import pytest

from scribewatch.pipeline.notify import PathMap
from scribewatch.pipeline.notify.http import DeliveryError, shown_url
from scribewatch.pipeline.notify.jellyfin import JellyfinTarget
from scribewatch.pipeline.notify.plex import PlexTarget, parse_sections
from scribewatch.pipeline.notify.webhook import WebhookTarget
from tests.harness.http_recorder import HttpRecorder
from tests.harness.notify import finished_job

# -- where each assertion comes from -----------------------------------------------------------
# Jellyfin: the operation, its body (MediaUpdateInfoDto -> Updates[] of MediaUpdateInfoPathDto
# {Path, UpdateType}) and its 204 answer.
JELLYFIN_OPERATION = ("https://typescript-sdk.jellyfin.org/interfaces/"
                      "generated-client.LibraryApiPostUpdatedMediaRequest.html")
JELLYFIN_BODY = "https://typescript-sdk.jellyfin.org/interfaces/generated-client.MediaUpdateInfoDto.html"
JELLYFIN_UPDATE = ("https://typescript-sdk.jellyfin.org/interfaces/"
                   "generated-client.MediaUpdateInfoPathDto.html")
JELLYFIN_204 = ("https://github.com/jellyfin/jellyfin/blob/v10.10.7/Jellyfin.Api/Controllers/"
                "LibraryController.cs (PostUpdatedMedia: [ProducesResponseType(204)])")
# What the server does with each Path: the item at that path, else the nearest one above it,
# is refreshed (so the video's path, not its folder's: a film's folder is no item).
JELLYFIN_MONITOR = ("https://github.com/jellyfin/jellyfin/blob/v10.10.7/Emby.Server."
                    "Implementations/IO/LibraryMonitor.cs (GetAffectedBaseItem)")
# Jellyfin's API authorization, by a Jellyfin developer: the `Authorization: MediaBrowser
# Token="…"` header is preferred; X-Emby-Token and api_key are deprecated (gone in 12.0).
JELLYFIN_AUTH = "https://gist.github.com/nielsvanvelzen/ea047d9028f676185832e51ffaf12a6f"
# Emby: the same operation (200, empty response) and API-key authentication.
EMBY_OPERATION = "https://dev.emby.media/reference/RestAPI/LibraryService/postLibraryMediaUpdated.html"
EMBY_AUTH = "https://dev.emby.media/doc/restapi/API-Key-Authentication.html"
EMBY_BASE = "https://dev.emby.media/doc/restapi/index.html (http[s]://host:port/emby/{apipath})"
# Plex: the token, the section listing and its Location paths.
PLEX_URL_COMMANDS = ("https://support.plex.tv/hc/en-us/articles/"
                     "201638786-Plex-Media-Server-URL-Commands")
# Plex's partial scan: python-plexapi's LibrarySection.update(path=) builds
# /library/sections/{key}/refresh?path=<quote_plus(path)> with the X-Plex-Token header.
PLEXAPI_UPDATE = ("https://github.com/pkkid/python-plexapi/blob/"
                  "a8d051f29bbadca28dc9bd4bf50f1fb76d0fb77a/plexapi/library.py")
PLEXAPI_HEADERS = ("https://github.com/pkkid/python-plexapi/blob/"
                   "a8d051f29bbadca28dc9bd4bf50f1fb76d0fb77a/plexapi/server.py")

MAP = PathMap({"/data/movies": "/mnt/movies", "/data/tv": "/mnt/tv"})


@pytest.fixture
def server():
    with HttpRecorder() as s:
        yield s


def _send_all(target, job):
    for payload, _ in target.requests(target.items(job)):
        target.send(payload)


# -- Jellyfin and Emby ---------------------------------------------------------------------------
def test_jellyfin_request_is_the_documented_one(server):
    server.answer("POST", "/Library/Media/Updated", 204)          # JELLYFIN_204
    target = JellyfinTarget(server.url + "/", "k3y", MAP)
    _send_all(target, finished_job("/data/movies/Heat (1995)/Heat (1995).mkv"))

    (req,) = server.requests
    assert req.method == "POST" and req.path == "/Library/Media/Updated"     # JELLYFIN_OPERATION
    assert req.raw_query == ""                # the key only in the header (JELLYFIN_AUTH)
    assert req.headers["authorization"] == 'MediaBrowser Token="k3y"'       # JELLYFIN_AUTH
    assert "x-emby-token" not in req.headers                                # JELLYFIN_AUTH
    assert req.headers["content-type"] == "application/json"
    # JELLYFIN_BODY + JELLYFIN_UPDATE: {"Updates": [{"Path", "UpdateType"}]}, the path as the
    # server sees it (mapped): the video that got a subtitle (JELLYFIN_MONITOR)
    assert req.json() == {"Updates": [{"Path": "/mnt/movies/Heat (1995)/Heat (1995).mkv",
                                       "UpdateType": "Modified"}]}
    assert req.status == 204


def test_emby_uses_its_base_path_and_token_header(server):
    server.answer("POST", "/emby/Library/Media/Updated", 200)     # EMBY_OPERATION: 200, empty
    target = JellyfinTarget(server.url, "emby-key", MAP, emby=True)
    assert target.name == "emby"
    _send_all(target, finished_job("/data/tv/Show/Season 1/S01E01.mkv"))

    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/emby/Library/Media/Updated")   # EMBY_BASE
    assert req.headers["x-emby-token"] == "emby-key"                           # EMBY_AUTH
    assert req.json() == {"Updates": [{"Path": "/mnt/tv/Show/Season 1/S01E01.mkv",
                                       "UpdateType": "Modified"}]}          # EMBY_OPERATION


def test_only_a_written_subtitle_asks_for_a_refresh():
    target = JellyfinTarget("http://jellyfin:8096", "k", MAP)
    assert target.items(finished_job("/data/movies/A/a.mkv", status="failed",
                                     reason="decode_error")) == []
    assert target.items(finished_job("/data/movies/A/a.mkv", status="skipped",
                                     reason="no_speech")) == []
    # srt and vtt of one film: one item
    job = finished_job("/data/movies/A/a.mkv",
                       outputs=["/data/movies/A/a.en.srt", "/data/movies/A/a.en.vtt"])
    assert target.items(job) == ["/mnt/movies/A/a.mkv"]
    assert PlexTarget("http://plex:32400", "t", MAP).items(job) == ["/mnt/movies/A"]


@pytest.mark.parametrize("status, retried", [(401, False), (400, False), (404, False),
                                             (429, True), (500, True), (503, True)])
def test_a_bad_token_is_not_retried_a_server_error_is(server, status, retried):
    server.answer("POST", "/Library/Media/Updated", status)
    target = JellyfinTarget(server.url, "wrong", MAP)
    with pytest.raises(DeliveryError) as e:
        target.send(("/mnt/movies/A/a.mkv",))
    assert e.value.retry is retried and f"HTTP {status}" in str(e.value)
    assert "wrong" not in str(e.value)       # the token never reaches a log line


def test_a_port_that_does_not_speak_http_is_a_delivery_error():
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def garbage():
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    target = JellyfinTarget(f"http://127.0.0.1:{listener.getsockname()[1]}", "k", MAP)
    try:
        with pytest.raises(DeliveryError) as e:
            target.send(("/mnt/movies/A/a.mkv",))
        assert e.value.retry
    finally:
        listener.close()


def test_a_server_that_is_down_is_retried():
    from tests.harness import free_port

    target = JellyfinTarget(f"http://127.0.0.1:{free_port()}", "k", MAP)
    with pytest.raises(DeliveryError) as e:
        target.send(("/mnt/movies/A/a.mkv",))
    assert e.value.retry


# -- Plex ------------------------------------------------------------------------------------------
def _sections_json(*libraries):
    """GET /library/sections with Accept: application/json (PLEX_URL_COMMANDS lists the XML form,
    the same MediaContainer > Directory(key) > Location(path) tree)."""
    return {"MediaContainer": {"size": len(libraries), "Directory": [
        {"key": key, "type": kind, "title": key, "Location": [{"id": i, "path": p}
                                                              for i, p in enumerate(paths)]}
        for key, kind, paths in libraries]}}


def test_plex_refresh_with_a_configured_section(server):
    server.answer("GET", "/library/sections/3/refresh", 200)
    target = PlexTarget(server.url, "plex-token", MAP, section="3")
    _send_all(target, finished_job("/data/tv/Show Name/Season 1/Show Name - S01E01.mkv"))

    (req,) = server.requests
    assert req.method == "GET" and req.path == "/library/sections/3/refresh"   # PLEXAPI_UPDATE
    assert req.query == {"path": ["/mnt/tv/Show Name/Season 1"]}               # PLEXAPI_UPDATE
    # quote_plus, as plexapi encodes it (PLEXAPI_UPDATE): spaces as '+', slashes escaped
    assert req.raw_query == "path=%2Fmnt%2Ftv%2FShow+Name%2FSeason+1"
    assert req.headers["x-plex-token"] == "plex-token"                # PLEXAPI_HEADERS
    assert "X-Plex-Token" not in req.raw_query   # a header, not the URL (kept out of logs)


def test_plex_finds_the_section_whose_location_holds_the_folder(server):
    server.answer("GET", "/library/sections", 200, body=_sections_json(
        ("1", "movie", ["/mnt/movies"]),
        ("2", "show", ["/mnt/tv", "/mnt/tv-kids"]),
        ("7", "show", ["/mnt/tv/anime"]),         # nested: the longest location wins
        ("9", "artist", ["/mnt/tv2"])))
    for section in ("1", "2", "7", "9"):
        server.answer("GET", f"/library/sections/{section}/refresh", 200)
    target = PlexTarget(server.url, "t", PathMap({"/data": "/mnt"}))
    for path in ("/data/movies/A/a.mkv", "/data/tv/Show/S1/e.mkv", "/data/tv/anime/X/e.mkv",
                 "/data/tv2/Y/e.mkv", "/data/tv-kids/Z/e.mkv"):
        _send_all(target, finished_job(path))

    listing = [r for r in server.requests if r.path == "/library/sections"]
    assert len(listing) == 1, "the section list is fetched once, then cached"
    assert listing[0].headers["accept"] == "application/json"      # JSON, not the XML default
    assert listing[0].headers["x-plex-token"] == "t"
    scans = [(r.path, r.query["path"][0]) for r in server.requests if r.path.endswith("/refresh")]
    assert scans == [("/library/sections/1/refresh", "/mnt/movies/A"),
                     ("/library/sections/2/refresh", "/mnt/tv/Show/S1"),
                     ("/library/sections/7/refresh", "/mnt/tv/anime/X"),
                     ("/library/sections/9/refresh", "/mnt/tv2/Y"),
                     ("/library/sections/2/refresh", "/mnt/tv-kids/Z")]


def test_plex_section_list_in_xml_is_read_too():
    # PLEX_URL_COMMANDS: the default answer is XML
    xml = (b'<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="2">'
           b'<Directory key="1" type="movie" title="Movies"><Location id="1" path="/mnt/movies"/>'
           b'</Directory><Directory key="4" type="show" title="TV">'
           b'<Location id="2" path="/mnt/tv"/><Location id="3" path="/mnt/tv2"/></Directory>'
           b'</MediaContainer>')
    assert parse_sections(xml) == [("/mnt/movies", "1"), ("/mnt/tv", "4"), ("/mnt/tv2", "4")]
    assert parse_sections(json.dumps(_sections_json(("5", "movie", ["D:\\Films"]))).encode()) \
        == [("D:\\Films", "5")]


def test_plex_folder_in_no_library_fails_and_says_why(server):
    server.answer("GET", "/library/sections", 200, body=_sections_json(("1", "movie", ["/x"])))
    target = PlexTarget(server.url, "t", PathMap())
    with pytest.raises(DeliveryError) as e:
        target.send("/data/movies/A")
    assert not e.value.retry and "path_map" in str(e.value) and "/x" in str(e.value)


def test_plex_answer_that_is_no_library_list_is_a_clear_failure(server):
    server.answer("GET", "/library/sections", 200, body="<html>Sign in</html",
                  content_type="text/html")
    target = PlexTarget(server.url, "t", PathMap())
    with pytest.raises(DeliveryError, match="not a library list") as e:
        target.send("/data/movies/A")
    assert not e.value.retry


# -- scribewatch check ----------------------------------------------------------------------------
# GET /System/Info ("Gets information about the server": ServerName, Version) needs a token,
# unlike /System/Info/Public, and refreshes nothing.
JELLYFIN_SYSTEM_INFO = ("https://kotlin-sdk.jellyfin.org/dokka/jellyfin-api/"
                        "org.jellyfin.sdk.api.operations/-system-api/get-system-info.html")
JELLYFIN_SYSTEM_INFO_BODY = "https://typescript-sdk.jellyfin.org/interfaces/generated-client.SystemInfo.html"


def test_check_asks_nothing_of_the_servers_but_whether_they_take_the_token(server):
    from scribewatch.pipeline import config
    from scribewatch.pipeline.notify import check_targets

    server.answer("GET", "/System/Info", 200,                      # JELLYFIN_SYSTEM_INFO_BODY
                  body={"ServerName": "den", "Version": "10.10.7"})
    server.answer("GET", "/library/sections", 200, body=_sections_json(
        ("1", "movie", ["/mnt/movies"]), ("2", "show", ["/mnt/tv"])))
    server.answer("POST", "/hook", 200)

    def check(**env):
        cfg = config.load(None, environ={f"SCRIBEWATCH_{k.upper()}": v for k, v in env.items()})
        return check_targets(cfg)

    both = dict(jellyfin_url=server.url, jellyfin_token="k", plex_url=server.url,
                plex_token="t", on_finished=server.url + "/hook")
    # watch folders mapped into the libraries, or holding them
    results = check(watch_dirs="/data/movies,/data", path_map='{"/data": "/mnt"}', **both)
    assert [ok for ok, _ in results] == [True, True, True], results
    assert "jellyfin den 10.10.7 accepts the token" in results[0][1]
    assert "2 library folder(s)" in results[1][1] and "not called" in results[2][1]
    (info,) = [r for r in server.requests if r.path == "/System/Info"]   # JELLYFIN_SYSTEM_INFO
    assert info.method == "GET"
    assert info.headers["authorization"] == 'MediaBrowser Token="k"'          # JELLYFIN_AUTH
    assert {(r.method, r.path) for r in server.requests} == \
        {("GET", "/System/Info"), ("GET", "/library/sections")}     # no refresh, no webhook

    # a watch folder Plex does not see: the path map is missing
    results = check(watch_dirs="/data/movies", **both)
    assert results[1][0] is False and "/data/movies (as Plex sees it) is in no Plex library" \
        in results[1][1]
    # a wrong key
    server.answer("GET", "/System/Info", 401)
    ((ok, what),) = check(watch_dirs="/x", jellyfin_url=server.url, jellyfin_token="bad")
    assert not ok and what == f"jellyfin: GET {server.url}/System/Info: HTTP 401"


# -- webhook ---------------------------------------------------------------------------------------
def test_webhook_body_fields_and_verified_signature(server):
    server.answer("POST", "/hook", 200)
    target = WebhookTarget(server.url + "/hook", MAP, secret="s3cret")
    job = finished_job("/data/movies/Heat (1995)/Heat (1995).mkv", id=42)
    _send_all(target, job)

    (req,) = server.requests
    assert req.method == "POST" and req.headers["content-type"] == "application/json"
    assert req.headers["x-scribewatch-event"] == "job.finished"
    assert req.headers["user-agent"].startswith("scribewatch/")
    # the receiver's check: HMAC-SHA256 of the raw body, compared in constant time
    expected = "sha256=" + hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-scribewatch-signature"], expected)
    body = req.json()
    assert body["event"] == "job.finished" and body["id"] == 42
    assert body["path"] == "/mnt/movies/Heat (1995)/Heat (1995).mkv"          # mapped
    assert body["daemon_path"] == job.path
    assert body["outputs"] == ["/mnt/movies/Heat (1995)/Heat (1995).en.srt"]   # mapped
    assert (body["status"], body["reason"], body["stage"]) == ("succeeded", None, None)
    assert body["language"] == "en" and body["audio_seconds"] == 11.0
    assert set(body["durations"]) == {"probe", "decode", "transcribe", "write", "queue_wait",
                                      "total"}
    assert body["durations"]["transcribe"] == 9.5 and body["durations"]["total"] == 12.5
    assert body["finished_at"].endswith("+00:00")


def test_webhook_for_a_failed_job_and_without_a_secret(server):
    server.answer("POST", "/hook", 204)
    target = WebhookTarget(server.url + "/hook", PathMap())
    _send_all(target, finished_job("/in/x.mkv", status="failed", reason="decode_error",
                                   error_stage="decode", error_message="/in/x.mkv: bad"))
    (req,) = server.requests
    assert "x-scribewatch-signature" not in req.headers
    body = req.json()
    assert (body["status"], body["reason"], body["stage"], body["outputs"]) == \
        ("failed", "decode_error", "decode", [])
    assert body["language"] is None


def test_a_webhook_error_never_shows_the_secret_in_its_url(server):
    """Slack, Discord and Home Assistant put the credential in the webhook URL's path."""
    server.answer("POST", "/api/webhooks/1234/t0ken-SECRET", 404)
    target = WebhookTarget(server.url + "/api/webhooks/1234/t0ken-SECRET?wait=true", PathMap())
    with pytest.raises(DeliveryError) as e:
        _send_all(target, finished_job("/in/x.mkv"))
    assert "SECRET" not in str(e.value) and "1234" not in str(e.value)
    assert str(e.value).startswith(f"POST {server.url}/…: HTTP 404")
    assert target.shown == f"{server.url}/…"


@pytest.mark.parametrize(("url", "secret_path", "shown"), [
    ("https://user:pw@jf.example:8920/jellyfin?api_key=k#x", False,
     "https://jf.example:8920/jellyfin"),
    ("https://hooks.slack.com/services/T0/B0/XXXX", True, "https://hooks.slack.com/…"),
    ("http://[::1]:9000/", True, "http://[::1]:9000"),
    ("http://ha.local:8123/api/webhook/id", False, "http://ha.local:8123/api/webhook/id"),
])
def test_shown_urls_carry_no_credentials(url, secret_path, shown):
    assert shown_url(url, secret_path=secret_path) == shown


def test_a_tampered_body_fails_the_signature():
    from scribewatch.pipeline.notify.webhook import signature

    body = json.dumps({"id": 1}).encode()
    assert signature("k", body) != signature("k", body.replace(b"1", b"2"))
    assert signature("k", body) != signature("other", body)


# -- path mapping ----------------------------------------------------------------------------------
def test_path_map_longest_prefix_wins_at_folder_boundaries():
    m = PathMap({"/data": "/srv", "/data/movies": "/mnt/movies", "/data/tv/": "/mnt/tv"})
    assert m("/data/movies/A/a.mkv") == "/mnt/movies/A/a.mkv"        # longest prefix
    assert m("/data/music/a.flac") == "/srv/music/a.flac"            # the shorter one
    assert m("/data/movies2/b.mkv") == "/srv/movies2/b.mkv"          # not /data/movies
    assert m("/data/tv/S/e.mkv") == "/mnt/tv/S/e.mkv"                # trailing slash in config
    assert m("/data/movies") == "/mnt/movies"
    assert m("/elsewhere/c.mkv") == "/elsewhere/c.mkv"               # unmapped: as it is
    assert m.folder("/data/movies/A/a.en.srt") == "/mnt/movies/A"


def test_path_map_to_a_windows_server():
    m = PathMap({"/data/movies": "D:\\Movies\\"})
    assert m("/data/movies/Heat (1995)/Heat.mkv") == "D:\\Movies\\Heat (1995)\\Heat.mkv"
    assert urllib.parse.quote_plus(m.folder("/data/movies/A/a.srt")) == "D%3A%5CMovies%5CA"


def test_path_map_the_other_way_sonarr_and_radarr_paths_on_this_node():
    """Webhooks from Sonarr and Radarr (pipeline/arr/) give their own paths: `local` reads
    the same mapping backwards, the longest server-side folder first, at folder boundaries."""
    m = PathMap({"/data": "/srv", "/data/movies": "/mnt/movies", "/data/tv/": "/mnt/tv",
                 "/data/win": "D:\\Movies\\"})
    assert m.local("/mnt/movies/A/a.mkv") == "/data/movies/A/a.mkv"
    assert m.local("/srv/music/a.flac") == "/data/music/a.flac"
    assert m.local("/mnt/movies2/b.mkv") == "/mnt/movies2/b.mkv"     # not /mnt/movies
    assert m.local("/mnt/tv/S/../S/e.mkv") == "/data/tv/S/e.mkv"
    assert m.local("/mnt/movies") == "/data/movies"
    # A Windows Sonarr: backslashes, and its drive letter in either case.
    assert m.local("D:\\Movies\\Heat (1995)\\Heat.mkv") == "/data/win/Heat (1995)/Heat.mkv"
    assert m.local("d:/movies/Heat.mkv") == "/data/win/Heat.mkv"
    assert m.local("/elsewhere/c.mkv") == "/elsewhere/c.mkv"          # unmapped: as it is
    for path in ("/data/movies/A/a.mkv", "/data/tv/S/e.mkv", "/data/music/a.flac"):
        assert m.local(m(path)) == path
