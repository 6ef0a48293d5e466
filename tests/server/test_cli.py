"""The ``roomcast`` command line."""

from __future__ import annotations

import subprocess
import time

import jwt

from tests.processes import ROOMCAST, SECRET


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"ROOMCAST_TOKEN_HMAC_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    return subprocess.run([ROOMCAST, *args], env=env, capture_output=True, text=True, timeout=30)


def test_gentoken() -> None:
    result = run("gentoken", "--user", "42", "--ttl", "60", "--channels", "a,b")
    assert result.returncode == 0
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["channels"] == ["a", "b"]
    assert time.time() + 55 < claims["exp"] <= time.time() + 60


def test_gentoken_subscription_token() -> None:
    result = run("gentoken", "--user", "7", "--channel", "$secret:room")
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["channel"] == "$secret:room"


def test_gentoken_without_secret_fails_clearly() -> None:
    result = subprocess.run(
        [ROOMCAST, "gentoken", "--user", "1"],
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "no HMAC secret" in result.stderr
