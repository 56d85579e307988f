"""The settings' value checks (`setting(..., check=...)`): each returns an error text or None."""

from __future__ import annotations

# The web settings are parsed by the same functions the exporter uses when it is built.
from .contract import parse_listen, validate_users


def _listen_check(value: str) -> str | None:
    try:
        _host, port = parse_listen(value)
    except ValueError as e:
        return str(e).removeprefix(f"listen {value!r}: ")
    # Port 0 (any free one) suits tests of the server, not a daemon Prometheus must find.
    return None if port else "expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847"


def _nice_check(value: int) -> str | None:
    return None if value <= 19 else "expected 0-19 (a nice increment)"


def _language_check(value: str) -> str | None:
    if value == "auto" or (len(value) == 2 and value.isalpha() and value.islower()):
        return None
    return "expected 'auto' or an ISO 639-1 code such as 'en'"


def _code_check(value: str) -> str | None:
    from .languages import to_iso639_1

    return None if to_iso639_1(value) else "expected a language code or name such as 'en'"


def _codes_check(values) -> str | None:
    return next((f"{v!r}: {why}" for v in values if (why := _code_check(v))), None)


def _folder_languages_check(folders: dict) -> str | None:
    for folder, code in folders.items():
        if not isinstance(code, str) or _code_check(code):
            return f"folder {folder!r}: expected a language code such as 'ja', not {code!r}"
    return None


def _auth_check(users: dict) -> str | None:
    try:
        validate_users(users)
    except ValueError as e:
        return str(e).removeprefix("basic_auth_users: ")
    return None


def did_you_mean(key: str, keys) -> str:
    """` (did you mean 'x'?)` for the closest known key, or nothing."""
    import difflib

    close = difflib.get_close_matches(key, list(keys), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
