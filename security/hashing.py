"""Secrets and their hashes.

API tokens are 32 random bytes, so a single SHA-256 is enough to store them: slow hashes
(bcrypt, PBKDF2) exist to make guessing low-entropy passwords expensive, and nobody can guess
256 random bits; a fast hash keeps every API request cheap. MQTT passwords are random too, but
Mosquitto verifies them itself and accepts only its own formats, so they are hashed the way
`mosquitto_passwd` does (PBKDF2-HMAC-SHA512, `$7$` format)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

# mosquitto_passwd 2.0's defaults (checked against the Debian binary: 101 rounds, 12-byte salt).
MOSQUITTO_ITERATIONS: Final = 101
MOSQUITTO_SALT_BYTES: Final = 12
SECRET_BYTES: Final = 32


def new_secret() -> str:
    """A random URL-safe secret: 256 bits."""
    return secrets.token_urlsafe(SECRET_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(token: str, stored: str) -> bool:
    """Constant-time comparison, so response timing tells nothing about the stored hash."""
    return hmac.compare_digest(token_hash(token), stored)


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """`password` as Mosquitto 2 stores it: `$7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>`."""
    salt = salt if salt is not None else secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${MOSQUITTO_ITERATIONS}${encoded[0]}${encoded[1]}"


def mosquitto_verify(password: str, stored: str) -> bool:
    """Whether `password` matches a `$7$` hash (what Mosquitto checks at CONNECT)."""
    _, kind, iterations, salt, digest = stored.split("$")
    if kind != "7":
        return False
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(computed, base64.b64decode(digest))
