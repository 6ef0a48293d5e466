"""JWT verification for connection and subscription tokens (RFC 8725 practice).

The algorithm family is pinned to the key that is configured for it: an HS token
is checked only with the HMAC secret, an RS/PS token only with the RSA key or a
JWKS RSA key, and so on; ``none`` is never accepted. A token's ``jku``/``x5u``
headers are ignored, so verifying never fetches anything but the configured JWKS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import orjson
from jwt import PyJWK, PyJWKSet

from .config import TokenSettings

_HMAC_ALGS = ("HS256", "HS384", "HS512")
_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGS = ("ES256", "ES384", "ES512")
_JWKS_ALGS = (*_RSA_ALGS, *_EC_ALGS, "EdDSA")
MAX_TTL_SECONDS = 365 * 24 * 3600


class TokenError(Exception):
    """Base class: the token cannot be used."""


class InvalidToken(TokenError):
    """Bad signature, algorithm, format or claims: a terminal 3500 for connections."""


class TokenExpired(TokenError):
    """``exp`` passed or ``nbf`` not reached: error 109, the SDK fetches a new token."""


_B64URL_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")
_HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _b64url_decode(segment: bytes) -> bytes:
    """Strict base64url (no padding, canonical): junk or malleable encodings are refused."""
    if len(segment) % 4 == 1 or not _B64URL_SEGMENT.fullmatch(segment):
        raise InvalidToken("malformed token")
    decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment:
        raise InvalidToken("malformed token")
    return decoded


def _header(token: str) -> dict[str, Any]:
    parts = token.encode().split(b".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    try:
        header = orjson.loads(_b64url_decode(parts[0]))
    except orjson.JSONDecodeError:
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def _raw_json(value: Any) -> bytes | None:
    """Claims like ``info`` are embedded as compact raw JSON; null means absent."""
    if value is None:
        return None
    return orjson.dumps(value)


def _b64_json(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        return orjson.dumps(orjson.loads(raw))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken("b64 claim is not base64 encoded JSON") from exc


def _expiry(claims: Mapping[str, Any]) -> int:
    """Unix time when access ends; ``expire_at`` overrides ``exp``, 0 means never."""
    if "expire_at" in claims and claims["expire_at"] is not None:
        value = claims["expire_at"]
    else:
        value = claims.get("exp") or 0
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise InvalidToken("bad expiry claim")
    return int(value)


@dataclass(frozen=True, slots=True)
class SubscriptionOverride:
    """Per-subscriber overrides of namespace options (``override`` claim)."""

    presence: bool | None = None
    join_leave: bool | None = None
    force_push_join_leave: bool | None = None
    force_recovery: bool | None = None
    force_positioning: bool | None = None

    @classmethod
    def parse(cls, value: Any) -> SubscriptionOverride | None:
        if not isinstance(value, dict):
            return None
        fields: dict[str, bool] = {}
        for key in (
            "presence",
            "join_leave",
            "force_push_join_leave",
            "force_recovery",
            "force_positioning",
        ):
            item = value.get(key)
            if isinstance(item, dict) and isinstance(item.get("value"), bool):
                fields[key] = item["value"]
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class ServerSideSub:
    """A subscription the server creates at connect (``channels`` / ``subs`` claims)."""

    channel: str
    info: bytes | None = None
    data: bytes | None = None
    override: SubscriptionOverride | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClaims:
    user: str
    expire_at: int  # unix seconds, 0 = never
    info: bytes | None
    subs: tuple[ServerSideSub, ...] = field(default=())
    meta: bytes | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionClaims:
    user: str
    channel: str
    client: str
    expire_at: int
    info: bytes | None
    data: bytes | None
    override: SubscriptionOverride | None


class JwksKeys:
    """A JWKS endpoint's keys, cached; unknown kids refetch at most once per throttle."""

    def __init__(self, url: str, refresh_interval: float, min_refetch_interval: float) -> None:
        self._url = url
        self._refresh_interval = refresh_interval
        self._min_refetch = min_refetch_interval
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK | None:
        now = time.monotonic()
        if kid not in self._keys or now - self._fetched_at > self._refresh_interval:
            async with self._lock:
                if (
                    kid not in self._keys
                    and time.monotonic() - self._fetched_at >= self._min_refetch
                ) or time.monotonic() - self._fetched_at > self._refresh_interval:
                    await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._url) as resp,
            ):
                resp.raise_for_status()
                document = await resp.json(content_type=None)
            keyset = PyJWKSet.from_dict(document)
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError):
            return  # keep the previous keys; unknown kids are refused meanwhile
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}


class TokenVerifier:
    """Checks tokens against one ``TokenSettings`` key set."""

    def __init__(self, settings: TokenSettings, *, user_id_claim: str | None = None) -> None:
        self._settings = settings
        self._user_claim = user_id_claim or settings.user_id_claim
        self._hmac_keys = [
            k for k in (settings.hmac_secret_key, settings.hmac_previous_secret_key) if k
        ]
        self._rsa_key = settings.rsa_public_key or None
        self._ec_key = settings.ecdsa_public_key or None
        self._jwks = (
            JwksKeys(
                settings.jwks_public_endpoint,
                settings.jwks_refresh_interval,
                settings.jwks_min_refetch_interval,
            )
            if settings.jwks_public_endpoint
            else None
        )

    @property
    def configured(self) -> bool:
        return self._settings.configured

    async def _decode(self, token: str) -> dict[str, Any]:
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken("token has no algorithm")
        if "crit" in header:
            raise InvalidToken("critical header extensions are not supported")
        keys: list[Any] = []
        if alg in _HMAC_ALGS:
            if not self._hmac_keys:
                raise InvalidToken(f"algorithm {alg!r} is not accepted")
            return self._decode_hmac(token, alg)
        elif alg in _RSA_ALGS and self._rsa_key:
            keys = [self._rsa_key]
        elif alg in _EC_ALGS and self._ec_key:
            keys = [self._ec_key]
        if not keys and self._jwks is not None and alg in _JWKS_ALGS:
            kid = header.get("kid")
            if isinstance(kid, str) and 0 < len(kid) <= 256:
                jwk = await self._jwks.key(kid)
                if jwk is not None and jwk.algorithm_name == alg:
                    keys = [jwk]
        if not keys:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        s = self._settings
        options: Any = {
            "require": ["exp"] if s.require_exp else [],
            "verify_aud": bool(s.audience),
            "verify_iss": bool(s.issuer),
        }
        last_error: Exception | None = None
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key=key,
                    algorithms=[alg],
                    options=options,
                    audience=s.audience or None,
                    issuer=s.issuer or None,
                    leeway=s.leeway,
                )
            except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
                raise TokenExpired(str(exc)) from exc
            except jwt.InvalidSignatureError as exc:
                last_error = exc  # try the previous secret too
            except (jwt.PyJWTError, ValueError, TypeError) as exc:
                raise InvalidToken(str(exc)) from exc
        raise InvalidToken("signature verification failed") from last_error

    def _decode_hmac(self, token: str, alg: str) -> dict[str, Any]:
        """HS256/384/512: verified here, as PyJWT's per-character checks cost ~100 us."""
        header_b64, payload_b64, signature_b64 = token.encode().split(b".")
        signature = _b64url_decode(signature_b64)
        signing_input = header_b64 + b"." + payload_b64
        digest = _HMAC_DIGESTS[alg]
        if not any(
            hmac.compare_digest(hmac.new(key.encode(), signing_input, digest).digest(), signature)
            for key in self._hmac_keys
        ):
            raise InvalidToken("signature verification failed")
        try:
            claims = orjson.loads(_b64url_decode(payload_b64))
        except orjson.JSONDecodeError:
            raise InvalidToken("payload is not JSON") from None
        if not isinstance(claims, dict):
            raise InvalidToken("payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        """Registered claims, as RFC 7519 and PyJWT check them."""
        s = self._settings
        now = time.time()
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidToken(f"{name} must be a number")
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if exp is None and s.require_exp:
            raise InvalidToken('token is missing the "exp" claim')
        if exp is not None and exp <= now - s.leeway:
            raise TokenExpired("token has expired")
        if nbf is not None and nbf > now + s.leeway:
            raise TokenExpired("token is not yet valid (nbf)")
        if iat is not None and iat > now + s.leeway:
            raise TokenExpired("token is not yet valid (iat)")
        if s.audience:
            aud = claims.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud
            if not isinstance(audiences, list) or s.audience not in audiences:
                raise InvalidToken("invalid audience")
        if s.issuer and claims.get("iss") != s.issuer:
            raise InvalidToken("invalid issuer")

    def _user(self, claims: Mapping[str, Any]) -> str:
        user = claims.get(self._user_claim, "")
        if user is None:
            return ""
        if not isinstance(user, str):
            raise InvalidToken("user id claim must be a string")
        return user

    async def verify_connection(self, token: str) -> ConnectionClaims:
        claims = await self._decode(token)
        if "channel" in claims:
            raise InvalidToken("a subscription token cannot be used to connect")
        subs: list[ServerSideSub] = []
        raw_subs = claims.get("subs")
        if isinstance(raw_subs, dict) and raw_subs:
            for channel, opts in raw_subs.items():
                opts = opts if isinstance(opts, dict) else {}
                subs.append(
                    ServerSideSub(
                        channel=channel,
                        info=_b64_json(opts.get("b64info")) or _raw_json(opts.get("info")),
                        data=_b64_json(opts.get("b64data")) or _raw_json(opts.get("data")),
                        override=SubscriptionOverride.parse(opts.get("override")),
                    )
                )
        elif isinstance(claims.get("channels"), list):
            subs = [ServerSideSub(c) for c in claims["channels"] if isinstance(c, str) and c]
        return ConnectionClaims(
            user=self._user(claims),
            expire_at=_expiry(claims),
            info=_b64_json(claims.get("b64info")) or _raw_json(claims.get("info")),
            subs=tuple(subs),
            meta=_raw_json(claims.get("meta")),
        )

    async def verify_subscription(self, token: str) -> SubscriptionClaims:
        claims = await self._decode(token)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise InvalidToken("not a subscription token: channel claim missing")
        client = claims.get("client", "")
        return SubscriptionClaims(
            user=self._user(claims),
            channel=channel,
            client=client if isinstance(client, str) else "",
            expire_at=_expiry(claims),
            info=_b64_json(claims.get("b64info")) or _raw_json(claims.get("info")),
            data=_b64_json(claims.get("b64data")) or _raw_json(claims.get("data")),
            override=SubscriptionOverride.parse(claims.get("override")),
        )


def ttl_until(expire_at: int, now: float | None = None) -> int:
    """Seconds until ``expire_at``, capped at a year like Centrifugo."""
    now = time.time() if now is None else now
    return max(0, min(MAX_TTL_SECONDS, int(expire_at - now)))


def make_token(secret: str, claims: Mapping[str, Any], algorithm: str = "HS256") -> str:
    """Sign claims with an HMAC secret (used by ``roomcast gentoken`` and tests)."""
    return jwt.encode(dict(claims), secret, algorithm=algorithm)
