"""Connection tokens signed with the secret the test servers are configured with."""

from __future__ import annotations

import time
from typing import Any

import jwt

SECRET = "roomcast-test-secret-0123456789abcdef"


def token(user: str = "42", ttl: int | None = 3600, secret: str = SECRET, **claims: Any) -> str:
    """A HS256 JWT made when called, so its ``exp`` is relative to now."""
    body: dict[str, Any] = {"sub": user, **claims}
    if ttl is not None:
        body["exp"] = int(time.time()) + ttl
    return jwt.encode(body, secret, algorithm="HS256")
