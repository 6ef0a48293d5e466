"""The benchmark's load generator against a real server: the harness counts right.

Benchmark numbers are only as good as the counting behind them, so this checks
exact delivery counts for the publishing modes bench/run.py uses and the phase
protocol (ready, go, done, quit) it drives. No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ServerProcess, start_server, token

ROOT = Path(__file__).resolve().parents[2]
LOADGEN_DIR = ROOT / "bench" / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen"

CONFIG: dict[str, Any] = {
    "channel": {
        "without_namespace": {
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
        }
    },
    "client": {"command_rate_limit": {"rate_per_second": 100_000, "burst": 100_000}},
}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@pytest.fixture(scope="module")
def loadgen() -> Path:
    subprocess.run(["make", "-s", "-C", str(LOADGEN_DIR), "loadgen"], check=True)
    return LOADGEN


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = start_server(CONFIG)
    yield process
    process.stop()


def loadgen_args(server: ServerProcess, tmp_path: Path, conns: int, **options: Any) -> list[str]:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token(f"user{i}") for i in range(conns)) + "\n")
    args = [f"--port={server.port}", f"--conns={conns}", f"--tokens={tokens}", "--timeout=20"]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    return args


def run(loadgen: Path, args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(loadgen), *args], check=True, capture_output=True, text=True, timeout=60
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_clean(report: dict[str, Any]) -> None:
    assert report["failed"] == 0
    assert all(count == 0 for count in report["errors"].values()), report["errors"]
    assert report["close_codes"] == {}


@pytest.mark.parametrize(
    ("pubs", "batch", "rate"),
    [(7, 1, 0), (12, 4, 0), (6, 2, 50)],
    ids=["one-per-frame", "bursty", "open-loop"],
)
def test_every_subscriber_gets_every_publication(
    loadgen: Path, server: ServerProcess, tmp_path: Path, pubs: int, batch: int, rate: int
) -> None:
    args = loadgen_args(
        server,
        tmp_path,
        5,
        channel=f"room-{batch}-{rate}",
        pub_token=token("publisher"),
        pubs=pubs,
        batch=batch,
        rate=rate,
        size=100,
    )
    report = run(loadgen, args)
    assert_clean(report)
    assert report["ready"] == 5
    assert report["publish"]["sent"] == pubs
    assert report["publish"]["acks"] == pubs
    assert report["publish"]["complete"] == pubs
    assert report["deliveries"] == report["expected"] == 5 * pubs
    assert report["latency_ms"]["n"] == 5 * pubs
    assert report["last_ms"]["n"] == pubs


def test_connect_only(loadgen: Path, server: ServerProcess, tmp_path: Path) -> None:
    report = run(loadgen, loadgen_args(server, tmp_path, 8))
    assert_clean(report)
    assert report["ready"] == 8
    assert report["setup"]["ready_ms"]["n"] == 8


def test_phases_driven_over_stdin(loadgen: Path, server: ServerProcess, tmp_path: Path) -> None:
    args = loadgen_args(server, tmp_path, 3, channel="phases", pub_token=token("publisher"), pubs=4)
    with subprocess.Popen(
        [str(loadgen), *args, "--wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            ready = json.loads(process.stdout.readline())
            assert ready["event"] == "ready"
            assert ready["ready"] == 3
            assert "deliveries" not in ready
            process.stdin.write("go\n")
            process.stdin.flush()
            done = json.loads(process.stdout.readline())
            assert done["event"] == "done"
            assert done["deliveries"] == done["expected"] == 12
            process.stdin.write("quit\n")
            process.stdin.flush()
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
