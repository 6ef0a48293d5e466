"""The servers the comparison runs, each pinned, configured for the same job, started alike.

The job: a client connects over WebSocket with an HS256 JWT, joins one room (a channel
without namespace, subscribing allowed to clients), and receives 100-byte publications
that a backend sends through the server's HTTP API (one request per publication, or a
batch request where the API has one), or that a member of the room sends (acknowledged
where the protocol has acks: not with ws). Compression is off everywhere: no server is told
to compress and the load client offers no permessage-deflate. Everything else is each
server's default, noted in ``defaults``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from health import wait_healthy  # compare.py puts bench/ on sys.path

PEERS_DIR = Path(__file__).resolve().parent
REPO = PEERS_DIR.parents[1]
CENTRIFUGO_VERSION = "6.9.1"
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"


#: Roomcast's and Centrifugo's channel options, the same for both: clients subscribe, and
#: a subscriber may publish into its channel (the rooms-of-2 case); the rest is default.
CHANNEL_OPTIONS = {"allow_subscribe_for_client": True, "allow_publish_for_subscriber": True}


class PeerError(Exception):
    """A peer could not be built, started or read."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roomcast" / "peers"


def centrifugo_binary() -> Path:
    return cache_dir() / f"centrifugo-{CENTRIFUGO_VERSION}" / "centrifugo"


def install() -> None:
    """Build Centrifugo and install the Node peers unless cached (bench/peers/install.sh)."""
    done = subprocess.run(
        ["bash", str(PEERS_DIR / "install.sh")],
        env={**os.environ, "CENTRIFUGO_VERSION": CENTRIFUGO_VERSION},
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    if done.returncode != 0:
        raise PeerError("bench/peers/install.sh failed (output above)")


@dataclass(frozen=True)
class Peer:
    """One server under test and how to reach it with the load client."""

    name: str
    title: str
    proto: str  # the load client's --proto
    path: str  # the WebSocket path
    version: str
    defaults: str
    cross_process: bool = True  # has a Redis backplane for rooms across processes
    cores: str = "0"  # taskset CPU list
    gomaxprocs: int | None = None

    def command(
        self, port: int, secret: str, api_key: str, workdir: Path, redis_url: str | None
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that start this peer on ``port``."""
        env = {"PORT": str(port), "SECRET": secret, "API_KEY": api_key}
        if redis_url:
            env["REDIS_URL"] = redis_url
        if self.name == "roomcast":
            config: dict[str, Any] = {"channel": {"without_namespace": CHANNEL_OPTIONS}}
            if redis_url:
                config["engine"] = {"type": "redis", "redis": {"address": [redis_url]}}
            path = workdir / f"roomcast-{port}.json"
            path.write_text(json.dumps(config))
            env = {
                "ROOMCAST_HOST": "127.0.0.1",
                "ROOMCAST_PORT": str(port),
                "ROOMCAST_TOKEN_HMAC_SECRET": secret,
                "ROOMCAST_API_KEY": api_key,
                "ROOMCAST_CONFIG": str(path),
            }
            return [sys.executable, "-m", "roomcast.cli", "serve"], env
        if self.name.startswith("centrifugo"):
            config = {
                "http_server": {"address": "127.0.0.1", "port": port},
                "log": {"level": "error"},
                "client": {"token": {"hmac_secret_key": secret}},
                "http_api": {"key": api_key},
                "health": {"enabled": True},
                "debug": {"enabled": True},  # /debug/pprof: heap in use after a forced GC
                "usage_stats": {"disabled": True},
                "channel": {"without_namespace": CHANNEL_OPTIONS},
            }
            if redis_url:
                config["engine"] = {"type": "redis", "redis": {"address": [redis_url]}}
            path = workdir / f"centrifugo-{port}.json"
            path.write_text(json.dumps(config))
            env = {"GOMAXPROCS": str(self.gomaxprocs or 1)}
            return [str(centrifugo_binary()), "--config", str(path)], env
        if self.name == "python-socketio":
            return [sys.executable, str(PEERS_DIR / "psio_server.py")], env
        node = shutil.which("node")
        if node is None:
            raise PeerError("node is not installed")
        script = {"socketio-node": "socketio_server.mjs", "ws": "ws_server.mjs"}[self.name]
        return [node, str(PEERS_DIR / script)], env


def _node_version(package: str) -> str:
    path = PEERS_DIR / "node_modules" / package / "package.json"
    with contextlib.suppress(OSError, ValueError):
        return str(json.loads(path.read_text())["version"])
    return "not installed"


def _python_version(package: str) -> str:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    return "not installed"


def all_peers() -> list[Peer]:
    """Every peer, Roomcast first; versions read from what is installed."""
    return [
        Peer(
            "roomcast",
            "Roomcast (Python, memory engine)",
            "centrifuge",
            "/connection/websocket",
            _python_version("roomcast"),
            "server pings every 25 s, per-client queue 1 MiB, command rate limit on, "
            "listen backlog 4096",
        ),
        Peer(
            "centrifugo",
            "Centrifugo (Go, GOMAXPROCS=1)",
            "centrifuge",
            "/connection/websocket",
            CENTRIFUGO_VERSION,
            "server pings every 25 s, per-client queue 1 MiB; JSON protocol; listen backlog "
            "net.core.somaxconn (4096 here)",
            gomaxprocs=1,
        ),
        Peer(
            "centrifugo-2",
            "Centrifugo (Go, GOMAXPROCS=2, both cores)",
            "centrifuge",
            "/connection/websocket",
            CENTRIFUGO_VERSION,
            "as above, on both cores: shares the load client's core",
            cross_process=False,
            cores="0,1",
            gomaxprocs=2,
        ),
        Peer(
            "socketio-node",
            "socket.io (Node)",
            "socketio",
            SOCKETIO_PATH,
            _node_version("socket.io"),
            "pingInterval 25 s, pingTimeout 20 s, in-memory adapter (Redis adapter "
            + _node_version("@socket.io/redis-adapter")
            + " across processes), listen backlog 511",
        ),
        Peer(
            "python-socketio",
            "python-socketio (aiohttp)",
            "socketio",
            SOCKETIO_PATH,
            _python_version("python-socketio"),
            "ping interval 25 s, ping timeout 20 s, AsyncRedisManager across processes, "
            "listen backlog 128 (aiohttp's run_app)",
        ),
        Peer(
            "ws",
            "ws (Node, the floor)",
            "ws",
            "/ws",
            _node_version("ws"),
            "no pings, no queues, no recovery: a room is a Set of sockets; listen backlog 511",
            cross_process=False,
        ),
    ]


class PeerServer:
    """One running peer: pinned with taskset, on a free port, killed by ``stop``."""

    def __init__(
        self,
        peer: Peer,
        port: int,
        secret: str,
        api_key: str,
        workdir: Path,
        redis_url: str | None = None,
        preexec: Any = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.peer = peer
        self.port = port
        command, env = peer.command(port, secret, api_key, workdir, redis_url)
        env.update(extra_env or {})
        self.log_path = workdir / f"{peer.name}-{port}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", peer.cores, *command],
                cwd=PEERS_DIR,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec,
            )
        self.pid = self.process.pid  # taskset execs the server: same pid
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        problem = wait_healthy(self.process, self.port, 60)
        if problem is not None:
            raise PeerError(f"{self.peer.name} {problem}: {self.log()}")

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise PeerError(f"{self.peer.name} died: {self.log()}")

    def go_heap_inuse(self) -> int | None:
        """Go's HeapInuse in bytes after a forced GC (pprof ?gc=1), for Centrifugo only."""
        if not self.peer.name.startswith("centrifugo"):
            return None
        url = f"http://127.0.0.1:{self.port}/debug/pprof/heap?gc=1&debug=1"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode(errors="replace")
        found = re.search(r"^# HeapInuse = (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def tcp_segments_out(port: int) -> int:
    """Data segments the server's established sockets on ``port`` have sent (ss -ti).

    On loopback with TCP_NODELAY each write the server makes leaves as a segment unless
    the kernel joins writes queued behind each other, so the difference over a window,
    divided by deliveries, is the server's writes per delivery as the wire sees them.
    """
    done = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(int(n) for n in re.findall(r"\bdata_segs_out:(\d+)", done.stdout))
