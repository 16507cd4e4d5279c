"""Reads of the registry database: the one module that asks SQL "which bin is where"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from core.errors import NotFound
from core.sql import Slice, paged
from core.telemetry import TAGS
from devices.grid import Grid, Place
from devices.models import Area, Bin, DeadLetter, DeadLetterTally, Operator, Site, Vehicle
from devices.retirement import in_service


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

    def as_tags(self) -> dict[str, str]:
        """The telemetry tags (core.telemetry.TAGS, the names of these fields) with their values:
        the one place a bin's grid becomes InfluxDB tags, for readings and for what the collector,
        the alerter and the Grafana push write beside them."""
        return {key: getattr(self, key) for key in TAGS}


def bin_tags(session: Session, *, in_service_only: bool = False) -> dict[str, BinTags]:
    """Tags of every registered bin, by bin id (one query: ingest caches the result); with
    `in_service_only`, without the retired ones (devices/retirement.py)."""
    community, street = aliased(Area), aliased(Area)
    query = (
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
    rows = session.execute(query.where(in_service()) if in_service_only else query)
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
    after: tuple[str] | None = None,
    count: bool = True,
    with_bins: bool = True,
) -> Slice[Site]:
    """A page of sites and the total matching (`count`), ordered by id; `after` the id of the
    last site of the previous page; `visible` (None: all) is the caller's scope. `with_bins`
    loads each site's bins along (without, `site.bins` would read them site by site: the API's
    list needs only `bin_counts`)."""
    query = select(Site)
    if visible is not None:
        query = query.where(Site.id.in_(visible))
    if site_type is not None:
        query = query.where(Site.site_type == site_type)
    if community_id is not None:
        query = query.where(Site.community_id == community_id)
    return paged(
        session,
        query,
        keys=[Site.id],
        descending=False,
        limit=limit,
        offset=offset,
        after=after,
        count=count,
        options=[selectinload(Site.bins)] if with_bins else [],
    )


def bin_counts(session: Session, site_ids: list[str]) -> dict[str, int]:
    """How many bins (retired ones too) each of `site_ids` has; a site without any is absent."""
    rows = session.execute(
        select(Bin.site_id, func.count()).where(Bin.site_id.in_(site_ids)).group_by(Bin.site_id)
    )
    return {site_id: n for site_id, n in rows}


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


def grid(session: Session) -> Grid:
    """Every area of the grid, as a tree to walk in memory (a city has a few hundred)."""
    rows = session.execute(select(Area.id, Area.name, Area.kind, Area.parent_id))
    return Grid.of(Place(*row) for row in rows)


def site_ids_in(session: Session, community_ids: Iterable[str]) -> frozenset[str]:
    """The ids of the sites in these communities."""
    return frozenset(
        session.scalars(select(Site.id).where(Site.community_id.in_(list(community_ids))))
    )


def site_names(session: Session, site_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Site id → name, ordered by id: of these sites, or (None) of every site."""
    query = select(Site.id, Site.name).order_by(Site.id)
    if site_ids is not None:
        query = query.where(Site.id.in_(list(site_ids)))
    return {site_id: name for site_id, name in session.execute(query)}


def operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(Operator.id)))


def vehicles(session: Session) -> list[Vehicle]:
    return list(session.scalars(select(Vehicle).order_by(Vehicle.id)))


def add_dead_letters(session: Session, letters: Iterable[DeadLetter]) -> None:
    session.add_all(letters)
    session.commit()


@dataclass(frozen=True, slots=True)
class DeadLetterCount:
    """Readings (or messages) dead-lettered for one reason: still kept, and pruned since."""

    kept: int
    pruned: int


def dead_letter_counts(session: Session) -> dict[str, DeadLetterCount]:
    kept = session.execute(
        select(DeadLetter.reason, func.sum(DeadLetter.parts)).group_by(DeadLetter.reason)
    )
    pruned = dict(
        session.execute(
            select(DeadLetterTally.reason, func.sum(DeadLetterTally.parts)).group_by(
                DeadLetterTally.reason
            )
        ).all()
    )
    counts = {reason: DeadLetterCount(int(n), int(pruned.pop(reason, 0))) for reason, n in kept}
    counts.update((reason, DeadLetterCount(0, int(n))) for reason, n in pruned.items())
    return counts


def prune_dead_letters(
    session: Session, *, before: datetime, per_bin: int, bins: Iterable[str]
) -> int:
    """Drop the dead letters received before `before`, and those of `bins` beyond the newest
    `per_bin` each, adding what they were to the tallies; returns how many were dropped. Only
    the bins given are counted, so a call costs index look-ups, not a scan of the table."""
    doomed = [DeadLetter.received_at < before]
    for bin_id in bins:
        cutoff = session.scalar(
            select(DeadLetter.id)
            .where(DeadLetter.bin_id == bin_id)
            .order_by(DeadLetter.id.desc())
            .offset(per_bin)
            .limit(1)
        )
        if cutoff is not None:
            doomed.append((DeadLetter.bin_id == bin_id) & (DeadLetter.id <= cutoff))
    where = or_(*doomed)
    groups = session.execute(
        select(
            DeadLetter.bin_id,
            DeadLetter.reason,
            func.count(),
            func.sum(DeadLetter.parts),
            func.max(DeadLetter.received_at),
        )
        .where(where)
        .group_by(DeadLetter.bin_id, DeadLetter.reason)
    ).all()
    dropped = 0
    for bin_id, reason, letters, parts, last in groups:
        tally = session.get(DeadLetterTally, (bin_id, reason))
        if tally is None:
            tally = DeadLetterTally(
                bin_id=bin_id, reason=reason, letters=0, parts=0, last_received_at=last
            )
            session.add(tally)
        tally.letters += letters
        tally.parts += int(parts)
        tally.last_received_at = max(tally.last_received_at, last)
        dropped += letters
    if dropped:
        session.execute(delete(DeadLetter).where(where))
    session.commit()
    return dropped


def list_dead_letters(
    session: Session, *, reason: str | None, limit: int, bin_id: str | None = None
) -> list[DeadLetter]:
    """The newest dead letters first, optionally of one reason or one bin (a bin maker asks
    why a device's messages were refused)."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if reason is not None:
        query = query.where(DeadLetter.reason == reason)
    if bin_id is not None:
        query = query.where(DeadLetter.bin_id == bin_id)
    return list(session.scalars(query))


def delete_dead_letters(session: Session, ids: Iterable[int]) -> None:
    for letter_id in ids:
        letter = session.get(DeadLetter, letter_id)
        if letter is not None:
            session.delete(letter)
    session.commit()
