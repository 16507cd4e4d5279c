"""The HTTP server of `binwatch api`: uvicorn's h11 protocol with a bound on request heads.

uvicorn closes a keep-alive connection that stays silent, but one that sends a byte now and then
never finishes its request head and is never closed: 500 such connections trickling headers
held 500 sockets open for as long as they liked (issue 13). Here a connection must have sent a
whole request head within `api_header_timeout_s` of connecting, or of its previous answer;
otherwise it is closed. Bodies are bounded by size (api.limits), answers by the admission gate.

`binwatch api --workers N` runs N such servers on one socket (uvicorn's supervisor, one process
each): a single process serves its event loop and its route threads on one core at a time
(docs/performance.md, "The API under load"). Each worker builds its app from the environment
(`app_from_environment`), so each has its own admission gate, registry pool and rate limiter."""

from __future__ import annotations

import asyncio
import logging

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.main import create_app
from core.settings import Settings

log = logging.getLogger(__name__)


class HeadTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request head is not complete in time: within
    `head_timeout_s`, which `app_from_environment` sets from the settings in each worker (uvicorn
    names the protocol class by import path, so the bound cannot travel with the class)."""

    head_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection is done)
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing %s: no whole request head in %g s", self.client, self.head_timeout_s)
            self.transport.close()


def app_from_environment() -> FastAPI:
    """The app of one `binwatch api` worker, from the BINWATCH_* environment (uvicorn's factory:
    a worker process is started by import path, not handed an app)."""
    settings = Settings()
    HeadTimeoutProtocol.head_timeout_s = settings.api.header_timeout_s
    return create_app(settings)
