"""Admin sessions: signatures, expiry, CSRF tokens and the login throttle."""

from __future__ import annotations

from roomcast.admin.sessions import LoginThrottle, SessionSigner

PASSWORD = "correct horse battery"


def test_a_session_is_accepted_until_it_expires() -> None:
    signer = SessionSigner(PASSWORD, ttl_seconds=60)
    cookie = signer.issue(now=1000.0)
    session = signer.check(cookie, now=1059.0)
    assert session is not None and session.expires == 1060.0
    assert signer.check(cookie, now=1060.0) is None


def test_forged_and_garbled_cookies_are_refused() -> None:
    signer = SessionSigner(PASSWORD, ttl_seconds=60)
    payload, signature = signer.issue().split(".")
    other = SessionSigner("another password!", ttl_seconds=60)
    for cookie in (
        None,
        "",
        "no-dot",
        "a.b.c",
        f"{payload}.{signature[:-2]}xx",
        other.issue(),
        f"{payload[:-1]}.{signature}",
        "e30.AAAA",
    ):
        assert signer.check(cookie) is None, cookie


def test_pods_with_one_password_share_sessions() -> None:
    first, second = SessionSigner(PASSWORD, 60), SessionSigner(PASSWORD, 60)
    session = second.check(first.issue())
    assert session is not None
    assert second.csrf_matches(session, first.csrf_token(session))


def test_the_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(PASSWORD, 60)
    one, two = signer.check(signer.issue()), signer.check(signer.issue())
    assert one is not None and two is not None
    assert signer.csrf_matches(one, signer.csrf_token(one))
    assert not signer.csrf_matches(one, signer.csrf_token(two))
    assert not signer.csrf_matches(one, None)


def test_the_password_is_compared_whole() -> None:
    signer = SessionSigner(PASSWORD, 60)
    assert signer.password_matches(PASSWORD)
    assert not signer.password_matches(PASSWORD[:-1])
    assert not signer.password_matches("\udcff")


def test_failed_logins_are_throttled_per_address_for_a_window() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for t in range(3):
        assert throttle.allowed("10.0.0.1", now=t)
        throttle.failed("10.0.0.1", now=t)
    assert not throttle.allowed("10.0.0.1", now=10)
    assert throttle.allowed("10.0.0.2", now=10)
    assert throttle.allowed("10.0.0.1", now=61)
