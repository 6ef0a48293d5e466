"""JWT verification: RFC 8725 practice and the usual attacks (alg confusion, none, jku)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from roomcast.config import TokenSettings
from roomcast.tokens import InvalidToken, TokenExpired, TokenVerifier, ttl_until
from tests.processes import ROOMCAST, SECRET

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "42", "exp": int(time.time()) + 600, **extra}


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(TokenSettings(**{"hmac_secret_key": SECRET, **settings}))


def unsigned(payload: dict[str, Any], header: dict[str, Any]) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(payload)}."


async def test_hs256_connection_token() -> None:
    result = await verifier().verify_connection(
        jwt.encode(claims(info={"name": "A"}, channels=["news"]), SECRET, algorithm="HS256")
    )
    assert result.user == "42" and result.info == b'{"name":"A"}'
    assert [s.channel for s in result.subs] == ["news"]


async def test_alg_none_rejected() -> None:
    token = unsigned(claims(), {"alg": "none", "typ": "JWT"})
    with pytest.raises(InvalidToken):
        await verifier().verify_connection(token)


async def test_hs256_signed_with_rsa_public_key_rejected() -> None:
    """Key confusion: an HS token whose secret is the server's RSA public key."""
    forged = _hmac_token_with_key(RSA_PUBLIC_PEM.encode())
    with pytest.raises(InvalidToken):
        await TokenVerifier(TokenSettings(rsa_public_key=RSA_PUBLIC_PEM)).verify_connection(forged)


def _hmac_token_with_key(key: bytes) -> str:
    """Signed by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{b64(json.dumps(claims()).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_rs256_and_es256() -> None:
    v = TokenVerifier(TokenSettings(rsa_public_key=RSA_PUBLIC_PEM, ecdsa_public_key=EC_PUBLIC_PEM))
    assert (
        await v.verify_connection(jwt.encode(claims(), RSA_KEY, algorithm="RS256"))
    ).user == "42"
    assert (await v.verify_connection(jwt.encode(claims(), EC_KEY, algorithm="ES256"))).user == "42"
    with pytest.raises(InvalidToken):  # no HMAC key configured: HS refused
        await v.verify_connection(jwt.encode(claims(), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        # Built when the test runs, not at collection: a session can outlast the margins.
        (lambda: claims(exp=int(time.time()) - 10), TokenExpired),
        (lambda: claims(nbf=int(time.time()) + 120), TokenExpired),
        (lambda: {"sub": "42"}, InvalidToken),
        (lambda: claims(channel="chat"), InvalidToken),
    ],
    ids=["expired", "nbf-future", "missing-exp", "subscription-token-as-connection"],
)
async def test_rejected_connection_tokens(
    payload: Callable[[], dict[str, Any]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await verifier().verify_connection(jwt.encode(payload(), SECRET, algorithm="HS256"))


async def test_leeway_accepts_small_skew() -> None:
    token = jwt.encode(claims(nbf=int(time.time()) + 20), SECRET, algorithm="HS256")
    assert (await verifier(leeway=30).verify_connection(token)).user == "42"


async def test_audience_and_issuer() -> None:
    v = verifier(audience="roomcast", issuer="auth.example")
    good = jwt.encode(claims(aud="roomcast", iss="auth.example"), SECRET, algorithm="HS256")
    assert (await v.verify_connection(good)).user == "42"
    for bad in (claims(aud="other", iss="auth.example"), claims(aud="roomcast", iss="evil")):
        with pytest.raises(InvalidToken):
            await v.verify_connection(jwt.encode(bad, SECRET, algorithm="HS256"))


async def test_connection_token_as_subscription_token_rejected() -> None:
    with pytest.raises(InvalidToken):
        await verifier().verify_subscription(jwt.encode(claims(), SECRET, algorithm="HS256"))


async def test_previous_secret_accepted_for_rotation() -> None:
    old = "old-secret-old-secret-old-secret-old"
    v = verifier(hmac_previous_secret_key=old)
    assert (await v.verify_connection(jwt.encode(claims(), old, algorithm="HS256"))).user == "42"


def test_short_hmac_secret_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSettings(hmac_secret_key="short")


def test_server_refuses_to_start_with_short_secret(tmp_path: Any) -> None:
    result = subprocess.run(
        [ROOMCAST, "serve"],
        env={"ROOMCAST_TOKEN_HMAC_SECRET": "short", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "client.token.hmac_secret_key" in result.stderr


def test_ttl_capped_at_a_year() -> None:
    assert ttl_until(4102444800, now=time.time()) == 365 * 24 * 3600


class Jwks:
    """A JWKS endpoint on loopback that counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": self.keys})


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[Jwks, str]]:
    endpoint = Jwks()
    app = web.Application()
    app.router.add_get("/jwks", endpoint.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield endpoint, str(server.make_url("/jwks"))
    await server.close()


async def test_jwks_rotation_and_refetch_throttle(jwks: tuple[Jwks, str]) -> None:
    endpoint, url = jwks
    key1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    endpoint.keys = [jwk_of(key1, "k1")]
    v = TokenVerifier(TokenSettings(jwks_public_endpoint=url, jwks_min_refetch_interval=0.5))
    tok1 = jwt.encode(claims(), key1, algorithm="RS256", headers={"kid": "k1"})
    assert (await v.verify_connection(tok1)).user == "42"
    assert endpoint.fetches == 1

    # Unknown kids refetch at most once per throttle window.
    tok2 = jwt.encode(claims(), key2, algorithm="RS256", headers={"kid": "k2"})
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await v.verify_connection(tok2)
    assert endpoint.fetches == 1  # within the window of the first fetch

    # Rotation: k2 added, k1 removed.
    endpoint.keys = [jwk_of(key2, "k2")]
    await asyncio.sleep(0.6)
    assert (await v.verify_connection(tok2)).user == "42"
    assert endpoint.fetches == 2


async def test_jwks_ignores_jku_and_odd_kids(jwks: tuple[Jwks, str]) -> None:
    endpoint, url = jwks
    key1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    endpoint.keys = [jwk_of(key1, "k1")]
    v = TokenVerifier(TokenSettings(jwks_public_endpoint=url, jwks_min_refetch_interval=60))
    evil = jwt.encode(
        claims(),
        key1,
        algorithm="RS256",
        headers={"kid": "../../etc/passwd", "jku": "http://127.0.0.1:1/attacker"},
    )
    with pytest.raises(InvalidToken):
        await v.verify_connection(evil)
    sql = jwt.encode(claims(), key1, algorithm="RS256", headers={"kid": "1' OR '1'='1"})
    with pytest.raises(InvalidToken):
        await v.verify_connection(sql)
    assert endpoint.fetches == 1  # one fetch of the configured JWKS, nothing else


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "!",  # junk in the signature
        lambda t: t[:-1] + ("B" if t[-1] == "A" else "A"),  # another signature
        lambda t: t + "==",  # padding
        lambda t: ".".join(t.split(".")[:2]),  # two segments
        lambda t: t.replace(".", "..", 1),  # empty segment
    ],
    ids=["junk", "tampered", "padded", "two-segments", "empty-segment"],
)
async def test_malformed_hmac_tokens(mangle: Any) -> None:
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        await verifier().verify_connection(mangle(good))


async def test_hmac_claim_checks() -> None:
    key = "k" * 64  # HS384/HS512 want longer keys
    v = verifier(audience="rc", hmac_secret_key=key)
    now = int(time.time())
    listed = jwt.encode(claims(aud=["x", "rc"]), key, algorithm="HS384")
    assert (await v.verify_connection(listed)).user == "42"
    with pytest.raises(TokenExpired):
        await v.verify_connection(jwt.encode(claims(aud="rc", iat=now + 600), key, "HS512"))
    with pytest.raises(InvalidToken):
        await v.verify_connection(jwt.encode({"sub": "1", "exp": True, "aud": "rc"}, key))
    with pytest.raises(InvalidToken):
        await v.verify_connection(jwt.encode(claims(), key))  # no aud
    crit = jwt.encode(claims(aud="rc"), key, headers={"crit": ["b64"]})
    with pytest.raises(InvalidToken):
        await v.verify_connection(crit)
