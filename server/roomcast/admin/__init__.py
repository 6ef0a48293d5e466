"""The admin web UI at ``/admin``: nodes, connections, channels, publish and disconnect.

Off unless ``admin.enabled`` with ``admin.password`` (its own password, never the client
token secret or the API key). The page is static HTML, CSS and one ES module served from
``static/`` without a build step; it talks to the JSON endpoints below with a session
cookie (HttpOnly, SameSite=Strict, Path=/admin). Requests that change anything must come
from the same origin and carry the session's CSRF token in ``X-CSRF-Token``; login must
be JSON from the same origin. Cluster-wide data comes from the same methods as the
server API (``info``, ``channels``, ``presence``, ``history``, ``publish``,
``disconnect``), so the UI shows what every node announces through the engine.
"""

from __future__ import annotations

from .routes import setup_admin

__all__ = ["setup_admin"]
