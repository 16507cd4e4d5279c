"""The web console (issue 15): pages for the people who run the pilot, served under /console
by the API's own app, in Chinese first. Server-rendered Jinja2 templates, htmx for the parts
that refresh, every asset served from this package (no CDN: an intranet must work)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from api.console import admin, crew, dispatch, grid, history
from api.console.auth import PREFIX, PageError
from api.console.map import router as map_router
from api.console.pages import page_error, router, text_refused
from api.console.reports import router as reports_router
from core.settings import Settings
from core.sql import NulInText
from security.throttle import LoginThrottle

STATIC_DIR = Path(__file__).with_name("static")


# Assets go out compressed when the browser takes gzip (ECharts: 1.1 MB, 0.37 MB gzipped); the
# pages do not, since they carry CSRF tokens next to what a user typed (BREACH).
GZIP_FROM_BYTES = 1024


def mount_console(app: FastAPI, settings: Settings) -> None:
    app.include_router(router)
    app.include_router(grid.router)
    app.include_router(admin.router)
    app.include_router(reports_router)
    app.include_router(map_router)
    app.include_router(dispatch.router)
    app.include_router(crew.router)
    app.include_router(history.router)
    assets = GZipMiddleware(StaticFiles(directory=STATIC_DIR), minimum_size=GZIP_FROM_BYTES)
    app.mount(f"{PREFIX}/static", assets, name="console-static")
    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(NulInText, text_refused)
    app.state.login_throttle = LoginThrottle(
        account_limit=settings.console.account_failures,
        address_limit=settings.console.address_failures,
        window=settings.console.lockout,
    )
