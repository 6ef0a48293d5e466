"""Semantic checks of a release before it reaches any pod.

The CRD schema catches malformed fields; this catches what only the server knows (its
settings model) and Redis settings that parse but cannot work. A problem becomes the
``Degraded`` condition with reason ``InvalidSpec``; the running release is left alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .render import CONFIG_FILE, Release
from .spec import ClusterSpec


def redis_problems(spec: ClusterSpec) -> list[str]:
    """What is wrong with the Redis backplane settings, if anything."""
    redis = spec.redis
    if redis is None:
        return []
    problems = []
    for url in redis.urls:
        problems.extend(_url_problems(url))
    if len(set(redis.urls)) != len(redis.urls):
        problems.append("redis.urls lists a shard twice")
    for address in redis.sentinel_addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"redis.sentinel address {address!r} is not host:port")
    if redis.sentinel_addresses and (redis.cluster or len(redis.urls) > 1):
        problems.append("redis.sentinel cannot be combined with cluster mode or several shards")
    if redis.cluster and len(redis.urls) > 1:
        problems.append("redis.cluster takes one seed URL, not shards")
    return problems


def _url_problems(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return [f"redis URL {url!r}: {error}"]
    if parts.scheme == "unix":
        return [] if parts.path else [f"redis URL {url!r} has no socket path"]
    if parts.scheme not in ("redis", "rediss"):
        return [f"redis URL {url!r}: scheme must be redis, rediss or unix"]
    problems = []
    if not parts.hostname:
        problems.append(f"redis URL {url!r} has no host")
    if port == 0:
        problems.append(f"redis URL {url!r} has port 0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        problems.append(f"redis URL {url!r}: database {database!r} is not a number")
    return problems


def server_config_problems(release: Release) -> list[str]:
    """What the server's own settings model rejects in the rendered config.

    Imports the server package only here: the operator needs it for this check alone.
    """
    try:
        from roomcast.config import ConfigError, load_settings
    except ImportError:  # pragma: no cover - the operator image always ships the server
        return []
    with tempfile.TemporaryDirectory(prefix="roomcast-operator-") as tmp:
        path = Path(tmp) / CONFIG_FILE
        path.write_text(release.config)
        try:
            load_settings(path, environ={})
        except ConfigError as error:
            return [f"{where}: {what}" for where, what in error.problems]
    return []


def problems(spec: ClusterSpec, release: Release) -> list[str]:
    return redis_problems(spec) + server_config_problems(release)
