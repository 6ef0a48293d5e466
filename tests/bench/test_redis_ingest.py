"""The backplane ingest benchmark reads with the ``roomcast`` it is given (what
``bench/run.py --server-commit`` snapshots), not the installed one, and counts every
message. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server.engine.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis


def ingest(port: int, pythonpath: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [
        sys.executable, str(ROOT / "bench" / "redis_fanout.py"), "--ingest-only",
        "--redis-port", str(port), "--messages", "2000", "--channels", "2",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_ingest_reads_with_the_code_on_its_path(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "server" / "roomcast", tmp_path / "roomcast")  # a snapshot's place
    with RedisServer() as server:
        installed = ingest(server.port, None)
        snapshot = ingest(server.port, tmp_path)
    assert installed["roomcast"] == str(ROOT / "server" / "roomcast")
    assert snapshot["roomcast"] == str(tmp_path / "roomcast")
    for result in (installed, snapshot):
        assert (result["messages"], result["frames"]) == (2000, "timed")
