"""HTTP basic auth against hashed passwords (the exporter-toolkit web-config idea).

Users map to a bcrypt hash (`$2b$…`, `$2a$…`, `$2y$…`, e.g. from `htpasswd -nB`) or
`sha256:<hex>`; a plain password is refused when the server is built, so a config can never hold
one. Comparisons are constant-time. bcrypt is slow on purpose (~0.1-0.3 s) and scrapers call every
15 s, so a successful check is remembered for a short while (as a SHA-256 of the password, never
the password itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from typing import Mapping

import bcrypt

# The hash formats are checked where config checks them too (one function for both).
from ..pipeline.contract import validate_tokens, validate_users

# Checked for unknown users so they cost as much as a wrong password (no user enumeration).
_DUMMY_BCRYPT = b"$2b$12$aAqrRWpUxyN/E3BxweWDsu7N8r3uzF1FN5MsmGA56/toWFi6SNAFG"

REALM = "scribewatch"
CACHE_SECONDS = 300.0


class BasicAuth:
    def __init__(self, users: Mapping[str, str], cache_seconds: float = CACHE_SECONDS,
                 clock=time.monotonic):
        self._users = validate_users(users)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[bytes, float]] = {}   # user -> (sha256(password), expiry)

    def check(self, authorization: str | None) -> bool:
        """True when the `Authorization` header carries a configured user's password."""
        verdict = self.quick_check(authorization)
        if verdict is not None:
            return verdict
        user, password = _parse(authorization)
        hashed = self._users.get(user)
        if hashed is None:
            bcrypt.checkpw(password[:72], _DUMMY_BCRYPT)
            return False
        # bcrypt only ever used the first 72 bytes (htpasswd and older libraries truncate
        # silently); bcrypt>=5 raises instead, so truncate the same way.
        if not bcrypt.checkpw(password[:72], hashed.encode()):
            return False
        with self._lock:
            self._cache[user] = (hashlib.sha256(password).digest(),
                                 self._clock() + self._cache_seconds)
        return True

    def quick_check(self, authorization: str | None) -> bool | None:
        """check()'s answer when it needs no bcrypt (no credentials, a sha256 user, a recent
        success); None when only the slow check() can tell. The server answers scrapes from
        one event loop, which must never wait a bcrypt round."""
        credentials = _parse(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        if hashed is None:
            return None                 # costs a bcrypt round, like a wrong password
        if hashed.startswith("sha256:"):
            digest = hashlib.sha256(password).hexdigest()
            return hmac.compare_digest(digest, hashed[7:].lower())
        with self._lock:
            cached = self._cache.get(user)
        if (cached and cached[1] > self._clock()
                and hmac.compare_digest(cached[0], hashlib.sha256(password).digest())):
            return True
        return None


def _parse(authorization: str | None) -> tuple[str, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", errors="replace"), password


class Credentials:
    """Who may call a protected route: a basic-auth user, or (for API clients such as the OpenAI
    SDKs) `Authorization: Bearer <token>` with a token whose SHA-256 is in `api_tokens`."""

    def __init__(self, users: Mapping[str, str] | None, tokens=()):
        self.basic = BasicAuth(users) if users else None
        self._tokens = [bytes.fromhex(t[7:]) for t in validate_tokens(tokens)]

    @property
    def configured(self) -> bool:
        return self.basic is not None or bool(self._tokens)

    def _bearer(self, authorization: str) -> bool:
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        # Every token compared, constant time each: no early exit to time.
        return any([hmac.compare_digest(digest, t) for t in self._tokens])

    def quick_check(self, authorization: str | None) -> bool | None:
        if authorization and authorization[:7].lower() == "bearer ":
            return self._bearer(authorization)
        return self.basic.quick_check(authorization) if self.basic else False

    def check(self, authorization: str | None) -> bool:
        if authorization and authorization[:7].lower() == "bearer ":
            return self._bearer(authorization)
        return self.basic.check(authorization) if self.basic else False
