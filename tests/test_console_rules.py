"""The console's pure rules, without any server: the password policy and hash, the login
throttle, session expiry and the CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import InvalidRequest
from security import passwords
from security.session_rules import csrf_matches, csrf_token, is_expired
from security.throttle import LoginThrottle, counted

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short1", "at least 10 characters"),
        ("x" * 257, "at most 256 characters"),
        ("abababababab", "4 different characters"),
        ("wang.li-2026!", "may not contain the user name"),
        ("xxWANG.LIxx", "may not contain the user name"),
    ],
)
def test_the_policy_refuses_weak_passwords_saying_why(password: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        passwords.check_policy(password, username="wang.li")


def test_a_good_password_passes_and_its_argon2_hash_verifies_only_it() -> None:
    passwords.check_policy("correct horse battery", username="wang.li")
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify("correct horse battery", stored)
    assert not passwords.verify("correct horse batterY", stored)
    assert not passwords.verify("correct horse battery", "not a hash")


def test_generated_passwords_meet_the_policy_and_differ() -> None:
    generated = {passwords.generate() for _ in range(20)}
    assert len(generated) == 20
    for password in generated:
        passwords.check_policy(password, username="a-user-name-longer-than-16")


def _throttle() -> LoginThrottle:
    return LoginThrottle(account_limit=3, address_limit=5, window=timedelta(minutes=15))


def test_an_account_locks_at_its_limit_until_the_oldest_failure_leaves_the_window() -> None:
    throttle = _throttle()
    for minute in range(3):
        assert throttle.locked_for(account="li", address="10.0.0.1", now=T0) is None
        throttle.failed(
            account="li", address=f"10.0.0.{minute}", now=T0 + timedelta(minutes=minute)
        )
    now = T0 + timedelta(minutes=3)
    assert throttle.locked_for(account="LI", address="10.9.9.9", now=now) == timedelta(minutes=12)
    assert throttle.locked_for(account="other", address="10.9.9.9", now=now) is None
    assert throttle.locked_for(account="li", address="x", now=T0 + timedelta(minutes=15)) is None


def test_an_address_locks_across_accounts_and_a_success_does_not_clear_it() -> None:
    throttle = _throttle()
    for n in range(5):
        throttle.failed(account=f"user{n}", address="10.0.0.7", now=T0)
    throttle.succeeded(account="user4")
    assert throttle.locked_for(account="fresh", address="10.0.0.7", now=T0) == timedelta(minutes=15)
    assert throttle.locked_for(account="fresh", address="10.0.0.8", now=T0) is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # the same IPv4 client, written as IPv6
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(address: str, key: str) -> None:
    assert counted(address) == key


def test_a_success_clears_the_accounts_failures() -> None:
    throttle = _throttle()
    for _ in range(2):
        throttle.failed(account="li", address="a", now=T0)
    throttle.succeeded(account="li")
    throttle.failed(account="li", address="b", now=T0)
    assert throttle.locked_for(account="li", address="c", now=T0) is None


@pytest.mark.parametrize(
    ("seen_min_ago", "age_h", "expired"),
    [(29, 1, False), (30, 1, True), (1, 11.9, False), (1, 12, True)],
)
def test_sessions_end_after_idle_time_or_absolute_age(
    seen_min_ago: float, age_h: float, expired: bool
) -> None:
    now = T0 + timedelta(hours=20)
    assert (
        is_expired(
            created_at=now - timedelta(hours=age_h),
            last_seen_at=now - timedelta(minutes=seen_min_ago),
            now=now,
            idle=timedelta(minutes=30),
            max_age=timedelta(hours=12),
        )
        is expired
    )


def test_the_csrf_token_belongs_to_its_session() -> None:
    token = csrf_token("abc_secret")
    assert csrf_matches("abc_secret", token)
    assert not csrf_matches("abc_other", token)
    assert not csrf_matches("abc_secret", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not csrf_matches("abc_secret", "")
    assert not csrf_matches("abc_secret", None)
    assert "secret" not in token


def test_failures_of_made_up_names_are_forgotten_once_out_of_the_window() -> None:
    throttle = _throttle()

    def spray(names: range, now: datetime) -> None:
        for n in names:
            throttle.failed(
                account=f"made-up{n}",
                address=f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
                now=now,
            )

    spray(range(6000), T0)  # 12,000 keys, all inside the window: the sweep finds none to drop
    assert throttle.tracked() == 12_000
    spray(range(6000, 11_000), T0 + timedelta(minutes=16))  # 22,000 keys in all: swept
    assert throttle.tracked() == 10_000  # only the recent ones are left
