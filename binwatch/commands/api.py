"""`binwatch api`: serve the API with uvicorn (mounted on the CLI in binwatch/cli.py)."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from core.settings import Settings
from core.sql import require_registry

# Each process holds BINWATCH_API_MAX_CONCURRENCY registry connections and its own memory;
# unbounded, `--workers 100000` (a slip of the keyboard) would start that many (ingest's: 32).
API_WORKERS_MAX = 32


def api(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default BINWATCH_API_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to bind (default BINWATCH_API_PORT)", min=1, max=65535)
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="server processes sharing the port (more than 1: more cores)",
            min=1,
            max=API_WORKERS_MAX,
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API."""
    settings = Settings()
    require_registry(settings.database_url)  # not an API that answers 503 for good
    uvicorn.run(
        "api.server:app_from_environment",
        factory=True,
        workers=workers,
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level="info",
        http="api.server:HeadTimeoutProtocol",
        # The client behind the TLS proxy, for the console's failed logins counted per address:
        # without it every person would have the proxy's address (docs/deployment.md).
        forwarded_allow_ips=settings.api.trusted_proxies,
    )
