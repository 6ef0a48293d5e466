"""Waiting for a server the benchmarks started until it answers ``GET /health``."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request


def wait_healthy(process: subprocess.Popen[bytes], port: int, timeout: float) -> str | None:
    """None once 127.0.0.1:``port`` answers /health; else what went wrong, in words
    that follow the server's name ("exited with 1", "did not answer /health in 20 s")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode}"
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1),
        ):
            return None
        time.sleep(0.05)
    return f"did not answer /health in {timeout:g} s"
