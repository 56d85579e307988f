"""The web settings' formats — listen address, TLS pair, password hashes, API token hashes — one
parser each: config checks them at start and the exporter (through `contract`) when it is built
on its own, so both accept and refuse the same values."""

from __future__ import annotations

import re
from typing import Mapping

_BCRYPT = re.compile(r"^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$")
_SHA256 = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' → (host, port); port 0 = any free one. Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen {listen!r}: put an IPv6 address in brackets, e.g. [::]:9847")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847")
    return host, int(port)


def tls_pair(cert_file: str | None, key_file: str | None) -> tuple[str, str] | None:
    """(cert, key), or None for plain HTTP. Raises ValueError when only one is set."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
    return (cert_file, key_file) if cert_file else None


def validate_users(users: Mapping[str, str]) -> dict[str, str]:
    """The basic-auth users, checked: every value must be a bcrypt or sha256 hash, so a config
    can never hold a plain password. Raises ValueError."""
    checked = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ValueError(f"basic_auth_users: bad user name {user!r} (non-empty, no ':')")
        if not isinstance(hashed, str) or not (_BCRYPT.match(hashed) or _SHA256.match(hashed)):
            raise ValueError(
                f"basic_auth_users: user {user!r}: the value must be a bcrypt hash ($2b$…, "
                "e.g. from `htpasswd -nBC 12 USER`) or sha256:<64 hex digits>, never a plain "
                "password")
        checked[user] = hashed
    return checked


_TOKEN_HASH = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


def validate_tokens(tokens) -> tuple[str, ...]:
    """The API's bearer tokens, as `sha256:<hex>` of each token (a token is random and long, so
    an unsalted hash is enough), never the token itself. Raises ValueError."""
    for t in tokens:
        if not isinstance(t, str) or not _TOKEN_HASH.match(t):
            raise ValueError("api_tokens: each value must be sha256:<64 hex digits> of a token "
                             "(`printf %s TOKEN | sha256sum`), never the token itself")
    return tuple(t.lower() for t in tokens)
