"""`/health`: asks InfluxDB and the registry database for real, so a load balancer or compose
health gate sees what a user would, and reports how far behind ingest is. It needs no key, so
a failure is named by its kind only (`unavailable`, `error`, `unavailable: OperationalError`): the
servers' own error texts, which carry internal addresses, database and user names, go to the
API's log."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api import queries
from api.auth import PUBLIC
from api.deps import InfluxDep, SessionDep
from api.schemas import Health, IngestHealth
from core.errors import SinkError, SinkUnavailable
from core.influx import InfluxClient
from core.times import from_epoch_ms

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

OK = "ok"
# /health answers within 2 s whatever InfluxDB does (a frozen server accepts the connection
# and never answers): a short ping, then the heartbeat query only if the ping answered.
PING_TIMEOUT_S = 0.5
HEARTBEAT_TIMEOUT_S = 1.0


@router.get(
    "/health",
    response_model=Health,
    dependencies=[PUBLIC],
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health, "description": "degraded"}},
)
def health(response: Response, influx: InfluxDep, session: SessionDep) -> Health:
    """Whether InfluxDB and the registry answer (200) or not (503), and ingest's last write."""
    influxdb, ingest = _check_influx(influx)
    database = _check_database(session)
    healthy = influxdb == OK and database == OK
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if healthy else "degraded", influxdb=influxdb, database=database, ingest=ingest
    )


def _check_influx(influx: InfluxClient) -> tuple[str, IngestHealth]:
    """Ping, then read the ingest heartbeat; a missing database counts as trouble, since no
    reading query could be answered from it."""
    try:
        influx.ping(timeout=PING_TIMEOUT_S)
        beat = queries.last_heartbeat(influx, timeout=HEARTBEAT_TIMEOUT_S)
    except SinkError as exc:
        log.warning("health: InfluxDB: %s", exc)
        trouble = "unavailable" if isinstance(exc, SinkUnavailable) else "error"
        return trouble, IngestHealth(last_write=None, lag_ms=None)
    if beat is None:
        return OK, IngestHealth(last_write=None, lag_ms=None)
    return OK, IngestHealth(last_write=from_epoch_ms(beat[0]), lag_ms=beat[1])


def _check_database(session: Session) -> str:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health: registry database: %s", str(exc).splitlines()[0])
        return f"unavailable: {type(exc).__name__}"
    return OK
