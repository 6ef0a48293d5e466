"""redis-server and redis-sentinel processes on free loopback ports, always cleaned up.

Tests that need them are marked ``redis``. When the binaries are missing they skip,
unless ``ROOMCAST_REQUIRE_REDIS=1`` (CI) makes a missing binary a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import free_port


def require_binary(name: str = "redis-server") -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("ROOMCAST_REQUIRE_REDIS") == "1":
        pytest.fail(f"{name} is not installed and ROOMCAST_REQUIRE_REDIS=1 (run tests/deps.sh)")
    pytest.skip(f"{name} is not installed (tests/deps.sh installs it)")


class RedisServer:
    """One redis-server; ``kill`` and ``start`` again keep its port and data directory."""

    def __init__(
        self, *args: str, port: int | None = None, workdir: Path | None = None, binary: str = ""
    ) -> None:
        self.binary = binary or require_binary()
        self.port = port or free_port()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="roomcast-redis-"))
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.password: str | None = None
        for i, arg in enumerate(self.args):
            if arg == "--requirepass":
                self.password = self.args[i + 1]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "no",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.wait_ready()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log()}")
            with contextlib.suppress(redis.RedisError), self.client() as conn:
                if conn.ping():
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.port} did not start:\n{self.log()}")

    def log(self) -> str:
        path = self.workdir / f"redis-{self.port}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class Sentinel:
    """One redis-sentinel watching master ``roomcast``."""

    def __init__(self, master_port: int, workdir: Path) -> None:
        self.binary = require_binary("redis-sentinel")
        self.port = free_port()
        self.config = workdir / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor roomcast 127.0.0.1 {master_port} 2\n"
            "sentinel down-after-milliseconds roomcast 1000\n"
            "sentinel failover-timeout roomcast 5000\n"
            "sentinel parallel-syncs roomcast 1\n"
        )
        log = (workdir / f"sentinel-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def master(self) -> tuple[str, int] | None:
        with (
            contextlib.suppress(redis.RedisError),
            redis.Redis(port=self.port, socket_timeout=2) as conn,
        ):
            reply = conn.execute_command("SENTINEL", "get-master-addr-by-name", "roomcast")
            if reply:
                return reply[0].decode(), int(reply[1])
        return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def redis_servers(count: int, *args: str) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(*args) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


class RedisCluster:
    """A Redis Cluster of ``masters`` nodes without replicas, every slot assigned."""

    def __init__(self, masters: int = 3, *args: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="roomcast-cluster-"))
        self.nodes = [self._node(args) for _ in range(masters)]

    def _node(self, args: tuple[str, ...]) -> RedisServer:
        port = free_port()
        return RedisServer(
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "2000",
            # the bus port is port + 10000 unless given, and free ports can be too high
            "--cluster-port", str(free_port()),
            *args,
            port=port,
            workdir=self.workdir,
        )  # fmt: skip

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    require_binary("redis-cli"), "--cluster", "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas", "0", "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ok(self, timeout: float = 15) -> None:
        """Every node reports cluster_state:ok (the slot map has propagated)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                with contextlib.suppress(redis.RedisError), node.client() as conn:
                    states.append(conn.execute_command("CLUSTER", "INFO").decode())
            if len(states) == len(self.nodes) and all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.05)
        raise RuntimeError("redis cluster did not converge:\n" + self.nodes[0].log())

    def owner(self, slot: int) -> RedisServer:
        with self.nodes[0].client() as conn:
            for start, end, master, *_ in conn.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(slot)

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Migrate one slot and its keys, as ``redis-cli --cluster reshard`` does."""
        source, target_id = self.begin_migration(slot, target)
        with source.client() as src:
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                self.migrate(source, target, keys)
        self.finish_migration(slot, target_id)

    def begin_migration(self, slot: int, target: RedisServer) -> tuple[RedisServer, str]:
        """Mark ``slot`` as leaving its owner for ``target``; the owner and target's id."""
        source = self.owner(slot)
        ids = {}
        for node in (source, target):
            with node.client() as conn:
                ids[node.port] = conn.execute_command("CLUSTER", "MYID").decode()
        with target.client() as dst, source.client() as src:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
        return source, ids[target.port]

    def migrate(self, source: RedisServer, target: RedisServer, keys: list[bytes]) -> None:
        with source.client() as src:
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)

    def finish_migration(self, slot: int, target_id: str) -> None:
        for node in self.nodes:
            with node.client() as conn:
                conn.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()
