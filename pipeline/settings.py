"""How a setting is declared (`setting(...)`, read into `Setting`), the value checks the
declarations in `config.py` name, and how a raw value is read as its kind (`coerce`). Kept apart
so that `config.py` is the list of settings and where they are read from, and nothing else."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import yaml

# The web settings are parsed by the same functions the exporter uses when it is built.
from .contract import parse_listen, validate_tokens, validate_users
from .language.codes import to_iso639_1


class ConfigError(Exception):
    """A bad setting; the message names the key and the value."""


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    kind: str                 # str | int | float | bool | list | dict | optpath | autoint |
                              # optfloat (the field type)
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None   # returns an error text or None
    secret: bool = False      # never printed; also read from the file SCRIBEWATCH_<KEY>_FILE


def setting(default: Any, help: str, *, choices: tuple = (), minimum: float | None = None,
            check: Callable[[Any], str | None] | None = None, secret: bool = False) -> Any:
    """A `Config` field: the setting's whole declaration. Its key is the field's name and its
    kind the field's type; the raw default is coerced like any other value, so the dataclass
    gets no default of its own (a Config is only ever made by `load`)."""
    return dataclasses.field(metadata={"setting": Setting(
        "", "", default, help, choices=choices, minimum=minimum, check=check, secret=secret)})


def listen_check(value: str) -> str | None:
    try:
        _host, port = parse_listen(value)
    except ValueError as e:
        return str(e).removeprefix(f"listen {value!r}: ")
    # Port 0 (any free one) suits tests of the server, not a daemon Prometheus must find.
    return None if port else "expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847"


def nice_check(value: int) -> str | None:
    return None if value <= 19 else "expected 0-19 (a nice increment)"


def language_check(value: str) -> str | None:
    if value == "auto" or (len(value) == 2 and value.isalpha() and value.islower()):
        return None
    return "expected 'auto' or an ISO 639-1 code such as 'en'"


def auth_check(users: dict) -> str | None:
    try:
        validate_users(users)
    except ValueError as e:
        return str(e).removeprefix("basic_auth_users: ")
    return None


def url_check(value: str) -> str | None:
    # A server address (also an href on the status page: never `javascript:` or a bare host).
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or any(c.isspace() for c in value)):
        return "expected an http:// or https:// URL without a query, e.g. http://jellyfin:8096"
    return None


def urls_check(values: tuple) -> str | None:
    return next((f"{v}: {p}" for v in values if (p := url_check(v))), None)


def path_map_check(mapping: dict) -> str | None:
    for here, there in mapping.items():
        if not here.startswith("/") or not isinstance(there, str) or not there:
            return (f"{here!r}: expected the daemon's absolute folder mapped to the media "
                    'server\'s folder, e.g. {"/data/movies": "/mnt/movies"}')
    return None


def tokens_check(tokens: tuple) -> str | None:
    try:
        validate_tokens(tokens)
    except ValueError as e:
        return str(e).removeprefix("api_tokens: ")
    return None


def code_check(value: str) -> str | None:
    return None if to_iso639_1(value) else "expected a language code or name such as 'en'"


def codes_check(values) -> str | None:
    return next((f"{v!r}: {why}" for v in values if (why := code_check(v))), None)


def folder_languages_check(folders: dict) -> str | None:
    for folder, code in folders.items():
        if not isinstance(code, str) or code_check(code):
            return f"folder {folder!r}: expected a language code such as 'ja', not {code!r}"
    return None


# -- reading a raw value (YAML, an environment string, a CLI string) as the setting's kind ------
AUTO = "auto"   # an `autoint` setting's word for None: the daemon chooses
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_UNSET = {"", "null", "none"}   # an `optfloat` setting's words for None (from env or CLI)


def coerce(setting: Setting, value: Any, source: str) -> Any:
    """Turn a raw value (YAML, env string, CLI string) into the setting's type, or raise."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}: invalid value {value!r} for '{setting.key}': {why}")

    kind = setting.kind
    if kind == "autoint":
        if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
            return None
        kind = "int"
    if kind == "optfloat":
        if value is None or (isinstance(value, str) and value.strip().lower() in _UNSET):
            return None
        kind = "float"
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
            raise bad(f"expected {'a whole number' if kind == 'int' else 'a number'}"
                      + (" or auto" if setting.kind == "autoint" else "")) from None
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


def store_url_check(value: str) -> str | None:
    if value.startswith(("sqlite://", "postgresql://", "postgres://")):
        return None
    return "expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


LIBRARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def libraries_check(libraries: dict) -> str | None:
    for name, folder in libraries.items():
        if not LIBRARY_NAME.match(name):
            return f"bad library name {name!r} (letters, digits, '_', '.', '-')"
        if not isinstance(folder, str) or not folder:
            return f"library {name!r}: expected a folder path"
    return None
