"""rediss://: the engine verifies Redis's certificate against a CA and shows its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roomcast.engine import HistoryOptions, Publication
from roomcast.engine.redis import RedisEngine

from .helpers import Recorder, eventually
from .redis_servers import RedisServer
from .test_engine_contract import redis_settings

pytestmark = pytest.mark.redis

HISTORY = HistoryOptions(size=10, ttl_seconds=60, meta_ttl_seconds=3600)


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
    )  # fmt: skip
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{x}" for x in ("crt", "key", "csr"))
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", key, "-out", csr,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", "1", "-extfile", extfile, "-out", cert,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca(directory, "roomcast-test-ca")
    other, _ = _ca(directory, "someone-else")
    server = _signed(directory, "redis", ca, "subjectAltName=IP:127.0.0.1\n")
    client = _signed(directory, "roomcast", ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], *server, *client, other)


@pytest.fixture(scope="module")
def tls_redis(pki: Pki) -> Iterator[tuple[RedisServer, int]]:
    """Plain port for the fixture's readiness check; TLS port, client certificates required."""
    from tests.processes import free_port

    tls_port = free_port()
    with RedisServer(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca),
        "--tls-auth-clients", "yes",
    ) as server:  # fmt: skip
        yield server, tls_port


async def _works(settings_url: str, **tls: object) -> bool:
    engine = RedisEngine(redis_settings(settings_url, connect_timeout=1.0, **tls))
    events = Recorder()
    await engine.start(events)
    try:
        if not engine.available:
            return False
        await engine.subscribe("secure")
        position = await engine.publish("secure", Publication(b"1"), history=HISTORY)
        await eventually(lambda: events.offsets("secure") == [1])
        history = await engine.history("secure", history=HISTORY, since=None, limit=-1)
        return position is not None and history.position == position
    finally:
        await engine.close()


async def test_verified_with_the_ca_and_a_client_certificate(
    pki: Pki, tls_redis: tuple[RedisServer, int]
) -> None:
    _, port = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    client = {"tls_cert_file": str(pki.client_cert), "tls_key_file": str(pki.client_key)}
    assert await _works(url, tls_ca_file=str(pki.ca), **client)
    # the same, said in the URL as redis-py spells it
    query = f"?ssl_ca_certs={pki.ca}&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
    assert await _works(url + query)


async def test_an_untrusted_certificate_is_refused(
    pki: Pki, tls_redis: tuple[RedisServer, int]
) -> None:
    _, port = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    client = {"tls_cert_file": str(pki.client_cert), "tls_key_file": str(pki.client_key)}
    assert not await _works(url, **client)  # the system store does not know our CA
    assert not await _works(url, tls_ca_file=str(pki.other_ca), **client)
    # a name the certificate does not carry (the server is reachable by it)
    elsewhere = f"rediss://localhost:{port}/0"
    assert not await _works(elsewhere, tls_ca_file=str(pki.ca), **client)
    assert await _works(elsewhere + "?ssl_cert_reqs=none", **client)
    # skipping verification is possible, and explicit
    assert await _works(url, tls_skip_verify=True, **client)
    assert await _works(url + "?ssl_cert_reqs=none", **client)


async def test_redis_refuses_a_client_without_a_certificate(
    pki: Pki, tls_redis: tuple[RedisServer, int]
) -> None:
    _, port = tls_redis
    assert not await _works(f"rediss://127.0.0.1:{port}/0", tls_ca_file=str(pki.ca))
