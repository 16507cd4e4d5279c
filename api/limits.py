"""Checks on request bodies, made before anything in the app reads them: a cap on their size (a
declared Content-Length over the cap is refused at once, a chunked body is counted as it streams
in) and JSON that can be represented at all (no NaN, no ±Infinity, no number beyond a float, no
lone UTF-16 surrogate: Python's json module accepts all four, and nothing after it can store or
echo them; and no NUL in a string, which PostgreSQL's text cannot hold)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body passes the cap; an HTTPException, so that FastAPI's
    body reading passes it on as a 413 instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body over the limit of {max_bytes} bytes",
        )


class BodySizeLimit:
    """Answers 413 with a message for bodies over `max_bytes`, or over `larger`'s cap for paths
    its pattern matches from their start (the crew's taps and photos)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: tuple[re.Pattern[str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        if self.larger is not None and self.larger[0].match(scope["path"]):
            max_bytes = self.larger[1]
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > max_bytes):
                refused = BodyTooLarge(max_bytes)
                await answer(send, refused.status_code, refused.detail)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(max_bytes)
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge as exc:
            await answer(send, exc.status_code, exc.detail)


class RepresentableJson:
    """Reads a JSON body whole (the size cap outside bounds it), answers 422 when it holds a
    value that cannot be represented, else hands it on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"json")
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = unrepresentable(body) if b"json" in content_type else None
        if problem is not None:
            error = {"type": "json_invalid", "loc": ["body"], "msg": problem}
            await answer(send, status.HTTP_422_UNPROCESSABLE_CONTENT, [error])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class _Unrepresentable(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Unrepresentable(f"{name} is not a JSON number; send a finite number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unrepresentable(f"the number {text[:40]} is beyond the range of a 64-bit float")
    return number


def unrepresentable(body: bytes) -> str | None:
    """What in this JSON body cannot be represented, or None: also None for a body that is not
    JSON at all, which FastAPI answers with its own 422 (`JSON decode error` and where)."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_finite)
    except _Unrepresentable as exc:
        return str(exc)
    except ValueError:
        return None
    return _unstorable_string(value)


def _unstorable_string(value: Any) -> str | None:
    strings: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff); send valid Unicode"
        # PostgreSQL's text holds no NUL: a manual request's reason with one was a 500 there.
        if "\x00" in text:
            return "a string holds a NUL character (\\u0000), which stored text cannot hold; leave it out"
    return None


async def answer(send: Send, code: int, detail: Any, *, retry_after: float | None = None) -> None:
    """A JSON error answer `{"detail": …}`, with Retry-After (whole seconds, at least 1) when
    given; for middlewares, which answer before the app (and its exception handlers) runs."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
