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

from tests.processes import API_KEY, ServerProcess, start_server, token

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
    ("pubs", "batch", "rate", "proto"),
    [
        (7, 1, 0, "centrifuge"),
        (12, 4, 0, "centrifuge"),
        (6, 2, 50, "centrifuge"),
        (7, 1, 0, "protobuf"),
        (12, 4, 0, "protobuf"),
    ],
    ids=["one-per-frame", "bursty", "open-loop", "protobuf", "protobuf-bursty"],
)
def test_every_subscriber_gets_every_publication(
    loadgen: Path,
    server: ServerProcess,
    tmp_path: Path,
    pubs: int,
    batch: int,
    rate: int,
    proto: str,
) -> None:
    args = loadgen_args(
        server,
        tmp_path,
        5,
        proto=proto,
        channel=f"room-{batch}-{rate}-{proto}",
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


@pytest.mark.parametrize("batch", [1, 5], ids=["publish", "batch"])
def test_publisher_on_the_server_api(
    loadgen: Path, server: ServerProcess, tmp_path: Path, batch: int
) -> None:
    args = loadgen_args(
        server, tmp_path, 4, channel=f"api-{batch}", api_key=API_KEY, pubs=10, batch=batch
    )
    report = run(loadgen, args)
    assert_clean(report)
    assert report["publish"]["sent"] == report["publish"]["acks"] == 10
    assert report["deliveries"] == report["expected"] == 40
    # a batch is handled in one loop turn: each subscriber gets its 5 in one frame
    assert report["frames_with_publications"] == 4 * 10 // batch


def test_a_wrong_api_key_counts_as_errors(
    loadgen: Path, server: ServerProcess, tmp_path: Path
) -> None:
    args = loadgen_args(server, tmp_path, 2, channel="api-bad", api_key="wrong", pubs=3)
    report = run(loadgen, args)
    assert report["publish"]["acks"] == 0
    assert report["errors"]["error_replies"] == 3
    assert report["deliveries"] == 0


def test_members_publish_into_their_rooms(
    loadgen: Path, server: ServerProcess, tmp_path: Path
) -> None:
    args = loadgen_args(server, tmp_path, 10, channel="pair", rooms=5, pubs=20, rate=200)
    report = run(loadgen, args)
    assert_clean(report)
    assert report["publish"]["sent"] == report["publish"]["acks"] == 20
    assert report["deliveries"] == report["expected"] == 40  # both members of each room
    assert report["publish"]["complete"] == 20


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
