"""The checks of single settings' values (`setting(..., check=...)`): each returns an error
text or None."""

from __future__ import annotations

import re

from .contract import parse_listen, validate_users

_LIBRARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


def _auth_check(users: dict) -> str | None:
    try:
        validate_users(users)
    except ValueError as e:
        return str(e).removeprefix("basic_auth_users: ")
    return None


def _store_url_check(value: str) -> str | None:
    if value.startswith(("sqlite://", "postgresql://", "postgres://")):
        return None
    return "expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def _libraries_check(libraries: dict) -> str | None:
    for name, folder in libraries.items():
        if not _LIBRARY_NAME.match(name):
            return f"bad library name {name!r} (letters, digits, '_', '.', '-')"
        if not isinstance(folder, str) or not folder:
            return f"library {name!r}: expected a folder path"
    return None
