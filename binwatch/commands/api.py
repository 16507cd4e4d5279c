"""`binwatch api`: serve the API with uvicorn (mounted on the CLI in binwatch/cli.py)."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from api.main import create_app
from api.server import head_timeout_protocol
from core.settings import Settings


def api(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default BINWATCH_API_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to bind (default BINWATCH_API_PORT)", min=1, max=65535)
    ] = None,
) -> None:
    """Serve the HTTP API."""
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level="info",
        http=head_timeout_protocol(settings.api.header_timeout_s),
    )
