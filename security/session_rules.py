"""The console session's rules, pure: when a session has ended, and its CSRF token.

A session ends `idle` after its last request or `max_age` after the login, whichever is first.
The CSRF token is an HMAC of the session's own token: every form of the session carries it and
every POST must send it back; a page of another site cannot read it (the cookie is HttpOnly and
the token is only in our pages), so it cannot forge a form. Nothing needs storing for it."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta


def is_expired(
    *,
    created_at: datetime,
    last_seen_at: datetime,
    now: datetime,
    idle: timedelta,
    max_age: timedelta,
) -> bool:
    return now >= last_seen_at + idle or now >= created_at + max_age


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"binwatch console csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, sent: str | None) -> bool:
    """Whether a form sent the session's CSRF token (compared in constant time)."""
    if not sent:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), sent.encode())
