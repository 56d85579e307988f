"""Settings: one schema, four sources.
Precedence: CLI flags > SCRIBEWATCH_* env > YAML file > defaults.

Every key is declared once, as a field of `Config` (`setting(default, help, …)`); `SCHEMA` is
read from those fields, and the YAML loader, the environment reader, the CLI flags,
`scribewatch check` and the README's config reference all come from it. A bad key or value
fails at start with a message naming both (exit code 2).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import yaml

from .contract import tls_pair
from .settings import (
    ConfigError,
    Setting,
    auth_check,
    code_check,
    codes_check,
    coerce,
    folder_languages_check,
    language_check,
    libraries_check,
    listen_check,
    nice_check,
    path_map_check,
    setting,
    store_url_check,
    tokens_check,
    url_check,
    urls_check,
)
from .subtitles.formats import FOLDER_FORMATS

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = (
    "mp3", "m4a", "aac", "flac", "wav", "ogg", "opus", "wma",
    "mp4", "m4v", "mkv", "avi", "mov", "webm", "ts", "m2ts", "wmv",
)
# Partial downloads and editors' temp files: never media we should open.
DEFAULT_IGNORE = (".*", "*.part", "*.tmp", "*.crdownload", "*.!qB", "*~")
OUTPUT_FORMATS = FOLDER_FORMATS   # the format registry's (subtitles/formats.py)
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32", "default")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting, declared once: name, type, default, help and checks."""

    watch_dirs: tuple[str, ...] = setting(
        ["./inbox"], "Folders to watch (recursively when `recursive`).")
    recursive: bool = setting(True, "Watch sub-folders too.")
    include_extensions: tuple[str, ...] = setting(
        list(MEDIA_EXTENSIONS),
        "File extensions (without dot, case-insensitive) that are media to transcribe.")
    ignore_globs: tuple[str, ...] = setting(
        list(DEFAULT_IGNORE), "File-name globs never picked up (hidden files, partial downloads).")
    stability_seconds: float = setting(
        2.0, "A file must be closed and keep the same size and mtime this long before it is a job.",
        minimum=0)
    polling: bool = setting(
        False, "Poll instead of inotify (NFS/SMB mounts do not deliver inotify events).")
    poll_interval_seconds: float = setting(
        5.0, "Polling period when `polling` is on.", minimum=0.1)
    rescan_interval_seconds: float = setting(
        300.0, "Full rescan period: catches events lost on network filesystems. 0 disables.",
        minimum=0)
    output_mode: str = setting(
        "beside", "Where subtitles go: `beside` the source, or `output_dir` (mirroring the "
        "watched tree).", choices=("beside", "output_dir"))
    output_dir: str | None = setting(None, "Root folder for `output_mode: output_dir`.")
    output_formats: tuple[str, ...] = setting(["srt"], f"Any of {', '.join(FOLDER_FORMATS)}.")
    model: str = setting(
        "tiny.en",
        "Model name (tiny.en, base, small, medium, large-v3, …) or a CTranslate2 model folder.")
    models_dir: str | None = setting(
        None, "Folder holding local model folders named like the model; searched before any "
        "download.")
    device: str = setting(
        "auto", "auto (CUDA when a GPU is usable, else CPU), cpu or cuda.", choices=DEVICES)
    compute_type: str = setting(
        "auto", "auto (float16 on CUDA, int8 on CPU) or a CTranslate2 type.",
        choices=COMPUTE_TYPES)
    cpu_threads: int = setting(0, "CPU threads for inference; 0 = all cores.", minimum=0)
    transcribe_nice: int = setting(
        10, "How much lower the inference threads' CPU priority is than the rest of the daemon "
        "(a Linux nice increment, 0-19): a Plex transcode and the /metrics server come "
        "first. 0 keeps them equal. Used when `transcribe_idle_class` is off or not "
        "available.", minimum=0, check=nice_check)
    transcribe_idle_class: bool = setting(
        False, "Run the inference threads in Linux's SCHED_IDLE class instead of at "
        "`transcribe_nice`: they get a core only when nothing else wants it, so a Plex "
        "transcode never shares the CPU with them, and one that takes every core stops "
        "transcription until it ends.")
    language: str = setting(
        "auto", "auto (detect) or a forced ISO 639-1 code.", check=language_check)
    folder_languages: dict = setting(
        {}, "Folder: language forced for every file under it (`/media/anime: ja`); the "
        "deepest matching folder wins, over `language`, tags and detection.",
        check=folder_languages_check)
    language_min_confidence: float = setting(
        0.6, "A detected language (the vote over windows of speech across the file) below this "
        "share of the vote is uncertain: `language_uncertain_action` decides.", minimum=0)
    language_uncertain_action: str = setting(
        "skip", "What an uncertain detection does: `skip` the file (reason "
        "`language_uncertain`) or use `default_language`.", choices=("skip", "default"))
    default_language: str = setting(
        "en", "The language used when detection is uncertain and "
        "`language_uncertain_action: default`.", check=code_check)
    preferred_audio_languages: tuple[str, ...] = setting(
        [], "Audio track languages to transcribe, best first (e.g. ja, en); else the "
        "default-flagged track, else the first. A commentary track is never chosen by "
        "default.", check=codes_check)
    translate_to_english: bool = setting(
        False, "Also write `<stem>.en.<fmt>` with Whisper's translation for a file that is not "
        "in English (a multilingual model), unless an English subtitle exists.")
    write_original_language: bool = setting(
        True, "Write the subtitle in the spoken language. Off (with `translate_to_english`): "
        "a file in another language gets the English translation only.")
    max_cps: float = setting(
        20.0, "Reading speed: at most this many characters per second on screen per cue.",
        minimum=1)
    beam_size: int = setting(5, "Beam size for decoding.", minimum=1)
    temperature: float | None = setting(
        None, "Decoding temperature. Unset: Whisper's fallback, temperature 0 and, for a "
        "window that looks repetitive or unlikely, again at 0.2, 0.4 … 1.0, which samples at "
        "random (two runs of one file may differ there). A number: that temperature only, in "
        "the guard's re-run and for API requests that send none too; 0 gives the same words "
        "for the same audio every time.",
        minimum=0)
    vad: bool = setting(True, "Silero VAD filter: skips silence and curbs hallucinations.")
    batch_size: int | None = setting(
        None, "Batched inference for long files (e.g. 8); 0 decodes sequentially. `auto`: "
        "sequential on CPU (with small models batching drops phrases), chosen from free GPU "
        "memory on a GPU, at most 16 (docs/performance.md).", minimum=0)
    batch_min_audio_seconds: float = setting(
        120.0, "Use batched inference for files at least this long.", minimum=0)
    workers: int | None = setting(
        None, "Jobs transcribed at once. `auto`: 1 on CPU; on a GPU as many per GPU as its "
        "free memory holds, at most 4 (docs/performance.md). A number: that many on CPU, or "
        "per GPU.", minimum=1)
    devices: tuple[str, ...] = setting(
        [], "GPU indexes (NVML's order, as nvidia-smi lists them) to use, e.g. [0, 1]: one "
        "model per GPU, jobs spread across them. Empty: every GPU found.",
        check=lambda v: None if all(d.isdigit() for d in v) else "expected GPU indexes (0, 1, …)")
    gpu_fallback_to_cpu: bool = setting(
        False, "When no GPU has memory for a worker (a game or a transcode holds it), transcribe "
        "on the CPU instead of waiting for GPU memory.")
    vram_retry_seconds: float = setting(
        30.0, "How often a GPU left out for lack of memory is looked at again (free memory "
        "read from NVML); its jobs wait meanwhile (`waiting_for_vram`).", minimum=0.1)
    prefetch_max_audio_seconds: float = setting(
        1800.0, "While a file is transcribed, the next queued one is probed, decoded and "
        "VAD-ed ahead in memory if it is at most this long (decoded audio takes 64 KB per "
        "second: 30 min = 115 MB). 0 turns prefetching off.", minimum=0)
    db: str = setting(
        "./scribewatch.db", "SQLite job store path, on a local disk (a network filesystem is "
        "refused). One daemon per store. Used when `store_url` is not set.")
    store_url: str | None = setting(
        None, "The job store: `sqlite:///relative/path`, `sqlite:////absolute/path` or "
        "`postgresql://user:password@host:5432/db` — a queue several machines share (README, "
        "\"Several machines\"). Unset: SQLite at `db`.", check=store_url_check)
    node_name: str | None = setting(
        None, "This machine's name in a shared store (each job records the node that ran it). "
        "Unset: the host name. Unique per running daemon.")
    libraries: dict = setting(
        {}, "Named watch roots, name: folder (`movies: /mnt/nas/movies`). Jobs are keyed by "
        "library and the path below it, so machines mounting one NAS at different paths share "
        "one job per file. Watched besides `watch_dirs`.", check=libraries_check)
    lease_seconds: float = setting(
        60.0, "How long a claimed job stays this node's without a heartbeat. Longer: a dead "
        "node's job waits longer for another; shorter: a stalled node (swap, a long pause) "
        "loses jobs it was still doing.", minimum=1)
    heartbeat_seconds: float = setting(
        10.0, "How often leases are renewed; well under `lease_seconds` (a third or less), so "
        "one missed renewal loses nothing.", minimum=0.1)
    takeover_delay_seconds: float = setting(
        0.0, "Extra wait after a lease expires before another node takes the job over: a margin "
        "for a node that is only slow (a loaded store, a network blip).", minimum=0)
    listen: str = setting(
        "0.0.0.0:9847", "HTTP address for the status page (/), /metrics, /healthz, /readyz and "
        "the transcription API.", check=listen_check)
    model_idle_unload_minutes: float = setting(
        0.0, "Free the model (and its GPU memory) after this many idle minutes; 0 keeps it "
        "loaded.", minimum=0)
    max_attempts: int = setting(
        3, "Attempts for transient failures before a job fails.", minimum=1)
    retry_backoff_seconds: float = setting(
        30.0, "First retry delay; doubles with each further attempt.", minimum=0)
    shutdown_grace_seconds: float = setting(
        30.0, "On SIGTERM, how long the running job may take to finish before it is re-queued. "
        "A second SIGTERM (Ctrl-C again) re-queues it at once.", minimum=0)
    skip_existing_subtitles: bool = setting(
        True, "Skip files that already have a subtitle for the target language beside them.")
    skip_embedded_subtitles: bool = setting(
        True, "Skip containers that carry a subtitle stream in the target language.")
    skip_same_stem: bool = setting(
        True, "Of media files with the same name but the extension in one folder (`Movie.mkv`, "
        "`Movie.mp4`), transcribe one: they would write the same `Movie.en.srt`, which media "
        "servers show with each. Off: each is transcribed, the last one's subtitle stays.")
    log_level: str = setting(
        "info", "debug, info, warning or error.", choices=("debug", "info", "warning", "error"))
    tls_cert_file: str | None = setting(None, "TLS certificate for the HTTP server (PEM).")
    tls_key_file: str | None = setting(None, "TLS private key for the HTTP server (PEM).")
    basic_auth_users: dict = setting(
        {}, "user: bcrypt hash or sha256:<hex> — protects /metrics, /api/status, the status "
        "page and the transcription API.", check=auth_check)
    api_tokens: tuple[str, ...] = setting(
        [], "Bearer tokens for the transcription API and /api/status (OpenAI clients' "
        "api_key), each as sha256:<hex> of the token; an alternative to basic auth.",
        check=tokens_check)
    metrics_auth: bool = setting(
        True, "false: /metrics needs no credentials while the API stays protected.")
    api_max_wait_seconds: float = setting(
        30.0, "How long an API request may wait for a free worker before a 503 with "
        "Retry-After (it always goes ahead of the folder queue).", minimum=0)
    api_workers: int = setting(
        0, "Extra workers that serve only the API, so a request never waits for a long "
        "folder job to end (each costs one more model replica's memory).", minimum=0)
    api_max_upload_bytes: int = setting(
        2 * 1024**3, "Largest API upload; above it a 413 before the body is read. Raw 16 kHz "
        "PCM (Bazarr) is 115 MB per hour.", minimum=1)
    api_answers_max_bytes: int = setting(
        256 * 1024**2, "The API's answers are kept in the job store by content (the audio's "
        "hash, the task, language, model, output format and options): a repeated request is "
        "answered from there without a transcription. At most this many bytes of answers; "
        "the least recently used go first. 0: keep none.", minimum=0)
    api_answers_max_age_seconds: float = setting(
        30 * 86400.0, "How long an API answer is kept (from the transcription that made it).",
        minimum=0)
    grafana_url: str | None = setting(
        None, "Your Grafana's address (e.g. http://grafana.lan:3000): the status page links to "
        "the scribewatch dashboards there.", check=url_check)

    # -- after a subtitle is written (pipeline/notify/) ---------------------------------------
    jellyfin_url: str | None = setting(
        None, "Jellyfin server URL (http://jellyfin:8096): each video that got a subtitle is "
        "refreshed there. Needs `jellyfin_token`.", check=url_check)
    jellyfin_token: str | None = setting(
        None, "Jellyfin API key (Dashboard > API Keys).", secret=True)
    emby_url: str | None = setting(
        None, "Emby server URL (http://emby:8096): as `jellyfin_url`, for Emby. Needs "
        "`emby_token`.", check=url_check)
    emby_token: str | None = setting(None, "Emby API key (Settings > API Keys).", secret=True)
    plex_url: str | None = setting(
        None, "Plex Media Server URL (http://plex:32400): the folder of each new subtitle is "
        "scanned there. Needs `plex_token`.", check=url_check)
    plex_token: str | None = setting(None, "Plex token (X-Plex-Token).", secret=True)
    plex_section: str | None = setting(
        None, "Plex library section id to scan; unset: the library whose folder holds the file, "
        "asked from the server.")
    path_map: dict = setting(
        {}, "The daemon's folders as the media servers and webhooks see them: {daemon folder: "
        "server folder}; the longest matching prefix wins.", check=path_map_check)
    on_finished: tuple[str, ...] = setting(
        [], "Webhook URLs that get a JSON POST for every job a worker finished.",
        check=urls_check)
    webhook_secret: str | None = setting(
        None, "Key of the webhooks' HMAC-SHA256 signature header (X-Scribewatch-Signature).",
        secret=True)
    notify_batch_seconds: float = setting(
        5.0, "Refreshes asked for within this window are sent together, each video or folder "
        "once.", minimum=0)
    notify_max_attempts: int = setting(
        5, "Attempts per refresh or webhook before it is given up (counted).", minimum=1)
    notify_retry_backoff_seconds: float = setting(
        2.0, "First delay before a failed refresh or webhook is sent again; doubles each time.",
        minimum=0)

    def as_dict(self) -> dict:
        """Every setting; a secret's value as `<set>` (what `scribewatch check` prints)."""
        return {k: ("<set>" if v and BY_KEY[k].secret else list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


# A field's type says how its values are read (annotations are strings here: `annotations`).
_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "dict": "dict",
          "tuple[str, ...]": "list", "str | None": "optpath", "int | None": "autoint",
          "float | None": "optfloat"}


def _schema() -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(f.metadata["setting"], key=f.name, kind=_KINDS[f.type])
                 for f in dataclasses.fields(Config))


SCHEMA: tuple[Setting, ...] = _schema()
BY_KEY = {s.key: s for s in SCHEMA}


# Environment names that are not settings (the config file's own location).
NON_SETTING_ENV = {"SCRIBEWATCH_CONFIG"}
# Settings that no longer exist: accepted with a warning (not an "unknown key"), so a config
# file that still has one starts.
RETIRED = {
    "notify_queue_size": "notifications wait in the job store now (an outbox), none is dropped",
}

def env_name(key: str) -> str:
    return "SCRIBEWATCH_" + key.upper()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def load(config_file: str | os.PathLike | None = None,
         environ: dict | None = None,
         flags: dict | None = None) -> Config:
    """Resolve settings from every source. `flags` holds only the keys given on the command line."""
    environ = os.environ if environ is None else environ
    values = {s.key: s.default for s in SCHEMA}
    values = {k: coerce(BY_KEY[k], v, "default") for k, v in values.items()}

    if config_file is not None:
        path = Path(config_file)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping of settings at top level")
        for key, value in raw.items():
            if key in RETIRED:
                log.warning("%s: '%s' is no longer a setting (%s): ignored", path, key,
                            RETIRED[key])
                continue
            if key not in BY_KEY:
                raise ConfigError(f"{path}: unknown key '{key}'"
                                  + _did_you_mean(str(key)))
            values[key] = coerce(BY_KEY[key], value, str(path))

    for decl in SCHEMA:
        name = env_name(decl.key)
        if name in environ:
            values[decl.key] = coerce(decl, environ[name], f"environment {name}")
        if decl.secret and name + "_FILE" in environ:   # Docker/systemd secrets
            values[decl.key] = _read_secret(decl, environ[name + "_FILE"], name + "_FILE")
    secret_files = {env_name(s.key) + "_FILE" for s in SCHEMA if s.secret}
    for name in environ:
        if name[len("SCRIBEWATCH_"):].lower() in RETIRED and name.startswith("SCRIBEWATCH_"):
            log.warning("environment: %s is no longer a setting (%s): ignored", name,
                        RETIRED[name[len("SCRIBEWATCH_"):].lower()])
            continue
        if (name.startswith("SCRIBEWATCH_") and name not in NON_SETTING_ENV | secret_files
                and name[len("SCRIBEWATCH_"):].lower() not in BY_KEY):
            raise ConfigError(f"environment: unknown setting {name}"
                              + _did_you_mean(name[len("SCRIBEWATCH_"):].lower()))

    for key, value in (flags or {}).items():
        values[key] = coerce(BY_KEY[key], value, f"flag {flag_name(key)}")

    _cross_check(values)
    return Config(**values)


def _read_secret(setting: Setting, path: str, source: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"environment {source}: cannot read {path}: {e.strerror}") from None
    return coerce(setting, value, f"environment {source} (file {path})")


def _did_you_mean(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(BY_KEY), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _cross_check(values: dict) -> None:
    bad_formats = [f for f in values["output_formats"] if f not in OUTPUT_FORMATS]
    if bad_formats or not values["output_formats"]:
        raise ConfigError(f"invalid value {list(values['output_formats'])!r} for 'output_formats': "
                          f"expected a non-empty list of {', '.join(OUTPUT_FORMATS)}")
    if values["output_mode"] == "output_dir" and not values["output_dir"]:
        raise ConfigError("invalid value 'output_dir' for 'output_mode': "
                          "set 'output_dir' to the folder subtitles should go to")
    if not (values["write_original_language"] or values["translate_to_english"]):
        raise ConfigError("invalid value false for 'write_original_language': with "
                          "'translate_to_english' off too there would be nothing to write")
    if not values["watch_dirs"] and not values["libraries"]:
        raise ConfigError("invalid value [] for 'watch_dirs': give at least one folder (or "
                          "'libraries')")
    for server in ("jellyfin", "emby", "plex"):
        if bool(values[f"{server}_url"]) != bool(values[f"{server}_token"]):
            raise ConfigError(f"{server}_url and {server}_token go together: set both or neither")
    if values["heartbeat_seconds"] * 2 > values["lease_seconds"]:
        raise ConfigError(f"invalid value {values['heartbeat_seconds']!r} for "
                          "'heartbeat_seconds': at most half of 'lease_seconds' "
                          f"({values['lease_seconds']:g}), so one late renewal loses no lease")
    try:
        tls_pair(values["tls_cert_file"], values["tls_key_file"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    values["include_extensions"] = tuple(
        e.lower().lstrip(".") for e in values["include_extensions"])
