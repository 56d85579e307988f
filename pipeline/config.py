"""Settings: one schema, four sources.
Precedence: CLI flags > SCRIBEWATCH_* env > YAML file > defaults.

Every key is declared once, as a field of `Config` (`setting(default, help, …)`); `SCHEMA` is
read from those fields, and the YAML loader, the environment reader, the CLI flags,
`scribewatch check` and the README's config reference all come from it. A bad key or value
fails at start with a message naming both (exit code 2).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import yaml

# The web settings are parsed by the same functions the exporter uses when it is built.
from .config_checks import (
    _auth_check,
    _language_check,
    _libraries_check,
    _listen_check,
    _nice_check,
    _store_url_check,
)
from .contract import tls_pair

MEDIA_EXTENSIONS = (
    "mp3", "m4a", "aac", "flac", "wav", "ogg", "opus", "wma",
    "mp4", "m4v", "mkv", "avi", "mov", "webm", "ts", "m2ts", "wmv",
)
# Partial downloads and editors' temp files: never media we should open.
DEFAULT_IGNORE = (".*", "*.part", "*.tmp", "*.crdownload", "*.!qB", "*~")
OUTPUT_FORMATS = ("srt", "vtt", "txt", "json")
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32", "default")


class ConfigError(Exception):
    """A bad setting; the message names the key and the value."""


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    kind: str                 # str | int | float | bool | list | dict | optpath (the field type)
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None   # returns an error text or None


def setting(default: Any, help: str, *, choices: tuple = (), minimum: float | None = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
    """A `Config` field: the setting's whole declaration. Its key is the field's name and its
    kind the field's type; the raw default is coerced like any other value, so the dataclass
    gets no default of its own (a Config is only ever made by `load`)."""
    return dataclasses.field(metadata={"setting": Setting(
        "", "", default, help, choices=choices, minimum=minimum, check=check)})


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
    output_formats: tuple[str, ...] = setting(["srt"], "Any of srt, vtt, txt, json.")
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
        "available.", minimum=0, check=_nice_check)
    transcribe_idle_class: bool = setting(
        False, "Run the inference threads in Linux's SCHED_IDLE class instead of at "
        "`transcribe_nice`: they get a core only when nothing else wants it, so a Plex "
        "transcode never shares the CPU with them, and one that takes every core stops "
        "transcription until it ends.")
    language: str = setting(
        "auto", "auto (detect) or a forced ISO 639-1 code.", check=_language_check)
    beam_size: int = setting(5, "Beam size for decoding.", minimum=1)
    vad: bool = setting(True, "Silero VAD filter: skips silence and curbs hallucinations.")
    batch_size: int = setting(
        0, "Batched inference for long files (e.g. 8); 0, the default, decodes sequentially. "
        "Faster, but with small models it drops phrases (docs/performance.md).", minimum=0)
    batch_min_audio_seconds: float = setting(
        120.0, "Use batched inference for files at least this long.", minimum=0)
    workers: int = setting(
        1, "Jobs transcribed at once (one per GPU or per few cores).", minimum=1)
    db: str = setting(
        "./scribewatch.db", "SQLite job store path, on a local disk (a network filesystem is "
        "refused). One daemon per store. Used when `store_url` is not set.")
    store_url: str | None = setting(
        None, "The job store: `sqlite:///relative/path`, `sqlite:////absolute/path` or "
        "`postgresql://user:password@host:5432/db` — a queue several machines share (README, "
        "\"Several machines\"). Unset: SQLite at `db`.", check=_store_url_check)
    node_name: str | None = setting(
        None, "This machine's name in a shared store (each job records the node that ran it). "
        "Unset: the host name. Unique per running daemon.")
    libraries: dict = setting(
        {}, "Named watch roots, name: folder (`movies: /mnt/nas/movies`). Jobs are keyed by "
        "library and the path below it, so machines mounting one NAS at different paths share "
        "one job per file. Watched besides `watch_dirs`.", check=_libraries_check)
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
        "0.0.0.0:9847", "HTTP address for /metrics, /healthz, /readyz.", check=_listen_check)
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
    log_level: str = setting(
        "info", "debug, info, warning or error.", choices=("debug", "info", "warning", "error"))
    tls_cert_file: str | None = setting(None, "TLS certificate for the HTTP server (PEM).")
    tls_key_file: str | None = setting(None, "TLS private key for the HTTP server (PEM).")
    basic_auth_users: dict = setting(
        {}, "user: bcrypt hash or sha256:<hex> — protects /metrics and /api/status.",
        check=_auth_check)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


# A field's type says how its values are read (annotations are strings here: `annotations`).
_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "dict": "dict",
          "tuple[str, ...]": "list", "str | None": "optpath"}


def _schema() -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(f.metadata["setting"], key=f.name, kind=_KINDS[f.type])
                 for f in dataclasses.fields(Config))


SCHEMA: tuple[Setting, ...] = _schema()
BY_KEY = {s.key: s for s in SCHEMA}


# Environment names that are not settings (the config file's own location).
NON_SETTING_ENV = {"SCRIBEWATCH_CONFIG"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    """Turn a raw value (YAML, env string, CLI string) into the setting's type, or raise."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}: invalid value {value!r} for '{setting.key}': {why}")

    kind = setting.kind
    if value is None:
        if kind == "optpath":
            return None
        raise bad("a value is required")
    if kind == "bool":
        if isinstance(value, bool):
            out = value
        elif isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            out = value.lower() in _TRUE
        else:
            raise bad("expected true or false")
    elif kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad("expected a number")
        try:
            out = int(value) if kind == "int" else float(value)
            if kind == "int" and isinstance(value, float) and value != int(value):
                raise ValueError
        except (TypeError, ValueError):
            raise bad(f"expected {'a whole number' if kind == 'int' else 'a number'}") from None
        if setting.minimum is not None and out < setting.minimum:
            raise bad(f"must be >= {setting.minimum:g}")
    elif kind == "list":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (str, int, float)) for v in value):
            raise bad("expected a list of strings")
        out = tuple(str(v) for v in value)
    elif kind == "dict":
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise bad("expected a mapping")
        out = {str(k): v for k, v in value.items()}
    else:  # str, optpath
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad("expected a string")
        out = str(value)
        if kind == "optpath" and out in ("", "null", "none"):
            return None
    if setting.choices and out not in setting.choices:
        raise bad(f"expected one of {', '.join(setting.choices)}")
    if setting.check is not None:
        problem = setting.check(out)
        if problem:
            raise bad(problem)
    return out


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
    values = {k: _coerce(BY_KEY[k], v, "default") for k, v in values.items()}

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
            if key not in BY_KEY:
                raise ConfigError(f"{path}: unknown key '{key}'"
                                  + _did_you_mean(str(key)))
            values[key] = _coerce(BY_KEY[key], value, str(path))

    for setting in SCHEMA:
        name = env_name(setting.key)
        if name in environ:
            values[setting.key] = _coerce(setting, environ[name], f"environment {name}")
    for name in environ:
        if (name.startswith("SCRIBEWATCH_") and name not in NON_SETTING_ENV
                and name[len("SCRIBEWATCH_"):].lower() not in BY_KEY):
            raise ConfigError(f"environment: unknown setting {name}"
                              + _did_you_mean(name[len("SCRIBEWATCH_"):].lower()))

    for key, value in (flags or {}).items():
        values[key] = _coerce(BY_KEY[key], value, f"flag {flag_name(key)}")

    _cross_check(values)
    return Config(**values)


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
    if not values["watch_dirs"] and not values["libraries"]:
        raise ConfigError("invalid value [] for 'watch_dirs': give at least one folder (or "
                          "'libraries')")
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


def add_flags(parser) -> None:
    """Add one `--key` flag per setting to an argparse parser (dest = key, default = unset)."""
    import argparse

    group = parser.add_argument_group("settings (override the config file and environment)")
    for s in SCHEMA:
        if s.key == "watch_dirs":
            group.add_argument("--watch", dest="watch_dirs", action="append", metavar="DIR",
                               default=argparse.SUPPRESS, help=s.help + " Repeatable.")
            continue
        if s.key == "output_dir":
            # Giving an output folder on the command line implies output_dir mode.
            group.add_argument("--output-dir", dest="output_dir", metavar="DIR",
                               default=argparse.SUPPRESS,
                               help=s.help + " Implies output_mode output_dir.")
            continue
        kwargs = dict(dest=s.key, default=argparse.SUPPRESS, help=s.help)
        if s.kind == "list":
            kwargs["metavar"] = "A,B"
        elif s.kind == "bool":
            kwargs["metavar"] = "true|false"
        elif s.key == "db":
            kwargs["metavar"] = "PATH"
        elif s.key == "listen":
            kwargs["metavar"] = "HOST:PORT"
        group.add_argument(flag_name(s.key), **kwargs)


def flags_from_args(args) -> dict:
    # None: a sub-command's own optional flag left out (`history --db`), not a value given.
    flags = {s.key: getattr(args, s.key) for s in SCHEMA
             if getattr(args, s.key, None) is not None}
    if "output_dir" in flags and "output_mode" not in flags:
        flags["output_mode"] = "output_dir"
    return flags


def _yaml_value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def reference_markdown() -> str:
    """The README's config reference table, generated so it cannot drift."""
    rows = ["| key | env | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SCHEMA:
        default = "(see below)" if s.key == "include_extensions" else _yaml_value(s.default)
        choices = f" One of: {', '.join(s.choices)}." if s.choices else ""
        rows.append(f"| `{s.key}` | `{env_name(s.key)}` | `{default}` | {s.help}{choices} |")
    return "\n".join(rows) + "\n"


def example_yaml() -> str:
    """The annotated example config (`scribewatch.example.yaml`): every key, at its default."""
    lines = ["# scribewatch configuration. Every key is optional; shown here at its default.",
             "# Precedence: command-line flags > SCRIBEWATCH_<KEY> environment > this file"
             " > defaults.",
             "# Copy to scribewatch.yaml (read from the working folder) or pass --config FILE.", ""]
    for s in SCHEMA:
        lines.append(f"# {s.help}" + (f" One of: {', '.join(s.choices)}." if s.choices else ""))
        lines.append(f"{s.key}: {_yaml_value(s.default)}")
        lines.append("")
    return "\n".join(lines)
