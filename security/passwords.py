"""People's passwords: the policy a new one must meet, and its argon2id hash.

Unlike API tokens (random, so one SHA-256 is enough: security.hashing), a password is chosen by
a person and can be guessed; argon2id (argon2-cffi's defaults, RFC 9106's second recommended
parameter set) makes every guess against a stolen hash cost memory and time."""

from __future__ import annotations

import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import InvalidRequest

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 256  # argon2 takes any length; a cap keeps a login from hashing megabytes
GENERATED_BYTES: Final = 12  # 16 URL-safe characters, 96 bits

_hasher = PasswordHasher()


def check_policy(password: str, *, username: str) -> None:
    """InvalidRequest saying what to change when `password` may not be used."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"a password has at most {MAX_LENGTH} characters")
    if len(set(password)) < 4:
        raise InvalidRequest("a password needs at least 4 different characters")
    if username.casefold() in password.casefold():
        raise InvalidRequest("a password may not contain the user name")


def generate(username: str = "") -> str:
    """A random password that meets the policy (for `username`: a short name could turn up in
    16 random characters, so it is drawn again then)."""
    while True:
        password = secrets.token_urlsafe(GENERATED_BYTES)
        if len(set(password)) >= 4 and (
            not username or username.casefold() not in password.casefold()
        ):
            return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (argon2 compares in constant time)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(GENERATED_BYTES))
"""Verified against for an unknown user, so a login takes as long whether the name exists."""
