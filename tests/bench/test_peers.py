"""The comparison benchmark end to end at smoke size, so its harness cannot rot.

Runs bench/peers/compare.py --quick on the smallest fan-out cases (one publication per
request, and batches of 10) and on the handshake case against every peer: Roomcast,
Centrifugo (built from the Go module proxy, cached), Node socket.io, python-socketio and
Node ws, each a real server driven by the C load client in its own wire format. It
checks what the figures rest on: every publication reached every subscriber, every
handshake succeeded, the fairness columns were measured, and the JSON, markdown table
and charts were written. No figure is compared with a number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / "bench" / "peers" / "compare.py"
FANOUT = ("fanout-200-single", "fanout-200-bursty")
DRAIN = "drain-1000"
CASES = (*FANOUT, "handshake", DRAIN)
PEERS = ("roomcast", "centrifugo", "centrifugo-2", "socketio-node", "python-socketio", "ws")

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or shutil.which("node") is None or shutil.which("taskset") is None,
    reason="needs a C compiler, Node.js and taskset",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("peers")
    args = [sys.executable, str(COMPARE), "--quick", "--out", str(out)]
    for case in CASES:
        args += ["--case", case]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    return json.loads((run_dir / "results.json").read_text()), run_dir


def test_every_peer_delivers_everything(results: tuple[dict[str, Any], Path]) -> None:
    data, _ = results
    assert sorted(data["cases"]) == sorted(CASES)
    for case in FANOUT:
        peers = data["cases"][case]["peers"]
        assert sorted(peers) == sorted(PEERS)
        for name, entry in peers.items():
            assert entry["errors"] == [], (case, name)
            (run,) = entry["runs"]
            report = run["details"]["loadgen"]
            assert run["delivered"] == 1.0, (case, name)
            assert report["deliveries"] == report["expected"] > 0
            assert report["publish"]["acks"] == report["publish"]["sent"]
            assert all(count == 0 for count in report["errors"].values()), (name, report)


def test_every_peer_takes_every_handshake(results: tuple[dict[str, Any], Path]) -> None:
    data, _ = results
    for name, entry in data["cases"]["handshake"]["peers"].items():
        assert entry["errors"] == [], name
        (run,) = entry["runs"]
        report = run["details"]["loadgen"]
        assert run["delivered"] == 1.0, name
        assert report["ready"] == report["conns"] == 500
        assert report["failed"] == 0
        assert run["metrics"]["cpu_us_per_connect"] > 0


def test_fairness_columns_are_measured(results: tuple[dict[str, Any], Path]) -> None:
    data, _ = results
    for case in FANOUT:
        for name, entry in data["cases"][case]["peers"].items():
            (run,) = entry["runs"]
            frames = run["details"]["loadgen"]["frames_with_publications"]
            assert 0 < frames <= run["details"]["loadgen"]["deliveries"], name
            assert run["pubs_per_frame"] >= 1.0
            if case.endswith("-single"):  # one publication in flight: nothing to join
                assert run["pubs_per_frame"] == 1.0, name
            assert run["writes_per_delivery"] > 0, name
            assert run["server_busy"] > 0, name
            assert run["metrics"]["cpu_us_per_delivery"] > 0, name
            pinned = name != "centrifugo-2"  # the two-core row has no core of its own
            assert (run["others_on_core"] is not None) == pinned, name


def test_every_peer_takes_its_clients_back_after_a_drain(
    results: tuple[dict[str, Any], Path],
) -> None:
    """The first server stopped with SIGTERM: every client is subscribed again on the second."""
    data, _ = results
    peers = data["cases"][DRAIN]["peers"]
    assert sorted(peers) == sorted(PEERS)
    for name, entry in peers.items():
        assert entry["errors"] == [], name
        (run,) = entry["runs"]
        report = run["details"]["loadgen"]
        storm = report["storm"]
        assert run["delivered"] == 1.0, name
        assert storm["reconnected"] == storm["clients"] == report["conns"] == 1000, name
        assert storm["reconnect_ms"]["n"] == 1000, name
        assert storm["seconds"] > 0 and run["metrics"]["cpu_us_per_reconnect"] > 0, name
    roomcast = peers["roomcast"]["runs"][0]["details"]["loadgen"]
    assert roomcast["close_codes"] == {"3001": 1000}  # the drain's close, to every client


def test_reports_are_written(results: tuple[dict[str, Any], Path]) -> None:
    data, run_dir = results
    table = (run_dir / "results.md").read_text()
    titles = {p["name"]: p["title"] for p in data["peers"]}
    for case in CASES:
        for name in PEERS:
            assert f"| {case} | {titles[name]} |" in table
    for chart in ("fanout.png", "handshake.png", "drain.png"):
        assert (run_dir / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p["name"]: p["version"] for p in data["peers"]}["centrifugo"] == "6.9.1"
