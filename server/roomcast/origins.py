"""Origin checks against cross-site WebSocket hijacking."""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit


class OriginPolicy:
    """Decides whether a browser page from ``Origin`` may open a WebSocket.

    No Origin header (SDKs outside browsers) is allowed. ``Origin: null``
    (sandboxed frames, file pages) is refused. With no allow-list only the
    server's own host is allowed; entries are exact origins or glob patterns
    such as ``https://*.example.com`` matched against the whole origin, so a
    look-alike ``https://app.example.com.evil.example`` does not pass.
    """

    def __init__(self, allowed: list[str]) -> None:
        self._allow_all = "*" in allowed
        self._patterns = [a.lower().rstrip("/") for a in allowed if a != "*"]

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().lower()
        if not origin or origin == "null":
            return False
        if self._allow_all:
            return True
        if self._patterns:
            return any(fnmatch.fnmatchcase(origin, p) for p in self._patterns)
        parts = urlsplit(origin)
        return bool(host) and parts.netloc == (host or "").lower()
