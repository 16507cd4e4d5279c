"""Reads of the registry database: the one module that asks SQL "which bin is where"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, aliased, selectinload

from binwatch.errors import NotFound
from binwatch.settings import Settings
from devices.models import Area, Bin, DeadLetter, Site


def make_engine(database_url: str, settings: Settings | None = None) -> Engine:
    """An engine for the registry, its pool bounded by `settings` (their defaults without):
    at most `database_pool_size + database_max_overflow` connections, a wait of at most
    `database_pool_timeout_s` for one, each checked before use (a restarted server's dead
    connections are replaced, not handed out). PostgreSQL also gets a connect timeout and a
    statement timeout; SQLite gets WAL and a busy timeout so ingest workers, the API and the CLI
    can share one file without 'database is locked' errors."""
    limits = settings or Settings.model_construct()
    pool: dict[str, Any] = {
        "pool_size": limits.database_pool_size,
        "max_overflow": limits.database_max_overflow,
        "pool_timeout": limits.database_pool_timeout_s,
        "pool_pre_ping": True,
    }
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        timeout_ms = round(limits.database_statement_timeout_s * 1000)
        # A server setting sent at connect: no extra round trip, and no SET for a pool's
        # reset-on-return rollback to undo. The URL's own `options`, if any, come after.
        options = [f"-c statement_timeout={timeout_ms}", *url.normalized_query.get("options", ())]
        connect_args = {
            "connect_timeout": limits.database_connect_timeout_s,
            "options": " ".join(options),
        }
    return create_engine(database_url, connect_args=connect_args, **pool)


@dataclass(frozen=True, slots=True)
class BinTags:
    """What ingest writes as InfluxDB tags for a bin: every grid level, so dashboards can
    GROUP BY any of them without a join."""

    bin: str
    site: str
    site_type: str
    stream: str
    community: str
    street: str
    district: str
    operator: str


def bin_tags(session: Session) -> dict[str, BinTags]:
    """Tags of every registered bin, by bin id (one query: ingest caches the result)."""
    community, street = aliased(Area), aliased(Area)
    rows = session.execute(
        select(
            Bin.id,
            Site.id,
            Site.site_type,
            Bin.stream,
            community.id,
            street.id,
            street.parent_id,
            Site.operator_id,
        )
        .join(Site, Bin.site_id == Site.id)
        .join(community, Site.community_id == community.id)
        .join(street, community.parent_id == street.id)
    )
    return {
        row[0]: BinTags(
            bin=row[0],
            site=row[1],
            site_type=row[2],
            stream=row[3],
            community=row[4],
            street=row[5],
            district=row[6] or "",
            operator=row[7],
        )
        for row in rows
    }


def list_sites(
    session: Session,
    *,
    site_type: str | None,
    community_id: str | None,
    limit: int,
    offset: int,
    visible: frozenset[str] | None = None,
) -> tuple[list[Site], int]:
    """A page of sites and the total matching, ordered by id; `visible` (None: all) is the
    caller's scope."""
    query = select(Site)
    if visible is not None:
        query = query.where(Site.id.in_(visible))
    if site_type is not None:
        query = query.where(Site.site_type == site_type)
    if community_id is not None:
        query = query.where(Site.community_id == community_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.scalars(
        query.options(selectinload(Site.bins)).order_by(Site.id).limit(limit).offset(offset)
    )
    return list(page), total


def get_site(session: Session, site_id: str) -> Site:
    site = session.get(Site, site_id, options=[selectinload(Site.bins)])
    if site is None:
        raise NotFound(f"no site with id {site_id!r}")
    return site


def get_bin(session: Session, bin_id: str) -> Bin:
    found = session.get(Bin, bin_id)
    if found is None:
        raise NotFound(f"no bin with id {bin_id!r}")
    return found


def area_chain(session: Session, area_id: str) -> list[Area]:
    """The area and its ancestors, nearest first (community, street, district, city)."""
    chain: list[Area] = []
    current = session.get(Area, area_id)
    while current is not None:
        chain.append(current)
        current = session.get(Area, current.parent_id) if current.parent_id else None
    return chain


def add_dead_letters(session: Session, letters: Iterable[DeadLetter]) -> None:
    session.add_all(letters)
    session.commit()


def dead_letter_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason))
    return {reason: count for reason, count in rows}


def list_dead_letters(session: Session, *, reason: str | None, limit: int) -> list[DeadLetter]:
    """The newest dead letters first, optionally of one reason."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if reason is not None:
        query = query.where(DeadLetter.reason == reason)
    return list(session.scalars(query))


def delete_dead_letters(session: Session, ids: Iterable[int]) -> None:
    for letter_id in ids:
        letter = session.get(DeadLetter, letter_id)
        if letter is not None:
            session.delete(letter)
    session.commit()
