"""Admin sessions: signed cookies, CSRF tokens and a login throttle.

A session is ``<payload>.<signature>``: the payload (expiry and a random id, base64 JSON)
signed with HMAC-SHA256 under a key derived from the admin password. Every pod with the
same password accepts every other pod's sessions, and changing the password ends them
all. The CSRF token is a second HMAC of the session id, sent back by the page in a
header that a cross-site form or image cannot set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    id: str
    expires: float


class SessionSigner:
    """Issues and checks session cookies and their CSRF tokens."""

    def __init__(self, password: str, ttl_seconds: float) -> None:
        self._key = hmac.new(
            password.encode(), b"roomcast admin session v1", hashlib.sha256
        ).digest()
        self._password = password.encode()
        self.ttl = ttl_seconds

    def password_matches(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), self._password)

    def issue(self, now: float | None = None) -> str:
        expires = (now if now is not None else time.time()) + self.ttl
        payload = _b64(json.dumps({"id": secrets.token_urlsafe(16), "exp": expires}).encode())
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None if it is forged, garbled or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(str(body["id"]), float(body["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (now if now is not None else time.time()):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf:" + session.id)

    def csrf_matches(self, session: Session, supplied: str | None) -> bool:
        return supplied is not None and hmac.compare_digest(supplied, self.csrf_token(session))

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())


class LoginThrottle:
    """At most ``limit`` failed logins per ``window`` seconds from one address."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def allowed(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return True
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return True
        return len(failures) < self.limit

    def failed(self, address: str, now: float | None = None) -> None:
        if len(self._failures) > 10_000:  # a flood of addresses: forget, do not grow
            self._failures.clear()
        self._failures.setdefault(address, deque()).append(time.monotonic() if now is None else now)
