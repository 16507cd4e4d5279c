"""The alerts' SQL: raising (once, by the partial unique index), refreshing, clearing and
acknowledging alerts, each change appending to the history and queueing its deliveries in the
same transaction; what the rules remember per bin; and the queries the alerter and the API need.

Every change is a conditional UPDATE or an INSERT the index may refuse, so ingest workers, the
alerter and the API can act on the same alert at once and each change happens exactly once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import Select, Table, bindparam, false, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from alerts.messages import AlertNotice, alert_topic
from alerts.models import (
    LIVE_STATES,
    Alert,
    AlertDelivery,
    AlertEvent,
    BinHealth,
    SiteContact,
)
from alerts.rules import SEVERITY, AlertType, Finding, Memory, Severity
from core.errors import NotFound
from core.reasons import Reason, as_columns
from core.sql import Slice, paged
from devices import notifications
from devices.models import Area, AreaContact, Bin, ContactChannel, Notification, Operator, Site
from devices.retirement import in_service

ALERTER = "alerter"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who hears of an alert: a role, its id (site, operator or area) and its addresses."""

    role: str  # site (the site's alert topic), manager, operator, community, squad
    id: str
    mqtt_topic: str | None
    webhook_url: str | None


def audience(severity: Severity) -> tuple[str, ...]:
    """Who is told, by severity: the manager and the operator always, the community from
    `major` up ("the community blows the whistle"), the street's squad for `critical`."""
    roles = ["manager", "operator"]
    if severity in (Severity.major, Severity.critical):
        roles.append("community")
    if severity is Severity.critical:
        roles.append("squad")
    return tuple(roles)


def people(session: Session, site_id: str, severity: Severity) -> list[tuple[str, str, str]]:
    """Who among people hears of an alert at the site: (role, contact owner, owner id), the
    owner being the site (its manager) or an area (the community, the street's squad)."""
    return [
        (role, *_owner(session, site_id, role)) for role in audience(severity) if role != "operator"
    ]


def _owner(session: Session, site_id: str, role: str) -> tuple[str, str]:
    """The contact of a person's role at a site: its site or its area."""
    if role == "manager":
        return "site", site_id
    area_id = session.get_one(Site, site_id).community_id
    if role == "squad":
        area_id = session.get_one(Area, area_id).parent_id or area_id
    return "area", area_id


def recipients(session: Session, site_id: str, severity: Severity, prefix: str) -> list[Recipient]:
    found = [Recipient("site", site_id, alert_topic(prefix, site_id), None)]
    for role in audience(severity):
        if role == "operator":
            operator = session.get_one(Operator, session.get_one(Site, site_id).operator_id)
            found.append(Recipient(role, operator.id, None, operator.webhook_url))
            continue
        owner, owner_id = _owner(session, site_id, role)
        contact: SiteContact | AreaContact | None = (
            session.get(SiteContact, owner_id)
            if owner == "site"
            else session.get(AreaContact, owner_id)
        )
        if contact is not None:
            found.append(Recipient(role, owner_id, contact.mqtt_topic, contact.webhook_url))
    return found


def webhook_secret(session: Session, delivery: AlertDelivery) -> str | None:
    """Looked up when sending, so a rotated secret applies to retries too."""
    if delivery.recipient == "manager":
        contact = session.get(SiteContact, delivery.recipient_id)
        return contact.webhook_secret if contact else None
    if delivery.recipient == "operator":
        operator = session.get(Operator, delivery.recipient_id)
        return operator.webhook_secret if operator else None
    area = session.get(AreaContact, delivery.recipient_id)
    return area.webhook_secret if area else None


# --- lifecycle ----------------------------------------------------------------------------


def live_alert(session: Session, bin_id: str, kind: AlertType) -> Alert | None:
    return session.scalar(
        select(Alert).where(
            Alert.bin_id == bin_id, Alert.type == kind.value, Alert.state.in_(LIVE_STATES)
        )
    )


class LiveAlert(NamedTuple):
    """What the alert hook reads of a live alert for every batch: plain values, since loading
    each of a batch's bins' live alerts as an ORM object every few seconds cost more than the
    rules themselves (`apply` loads the one it changes)."""

    id: int
    bin_id: str
    type: str
    last_seen_at: datetime


def live_alerts(session: Session, bin_ids: Iterable[str]) -> dict[tuple[str, str], LiveAlert]:
    """The live alerts of these bins by (bin, type): one query for a whole batch."""
    rows = session.execute(
        select(Alert.id, Alert.bin_id, Alert.type, Alert.last_seen_at).where(
            Alert.bin_id.in_(list(bin_ids)), Alert.state.in_(LIVE_STATES)
        )
    )
    return {(row.bin_id, row.type): LiveAlert(*row) for row in rows}


def as_live(alert: Alert) -> LiveAlert:
    return LiveAlert(alert.id, alert.bin_id, alert.type, alert.last_seen_at)


def apply(
    session: Session, bin_id: str, finding: Finding, *, now: datetime, prefix: str
) -> Alert | None:
    """Raise or refresh (present) or clear (over) the bin's alert of the finding's type; the
    alert raised or cleared, None when nothing changed. The caller commits."""
    if finding.present:
        return raise_alert(session, bin_id, finding, now=now, prefix=prefix)
    existing = live_alert(session, bin_id, finding.kind)
    if existing is None:
        return None
    return clear(session, existing, now=now, note=finding.reason or "", prefix=prefix)


def raise_alert(
    session: Session, bin_id: str, finding: Finding, *, now: datetime, prefix: str
) -> Alert | None:
    """The new alert, or None when one is already live (then only its `last_seen_at` moves on,
    which is what keeps a held condition from clearing)."""
    existing = live_alert(session, bin_id, finding.kind)
    if existing is not None:
        if now > existing.last_seen_at:
            existing.last_seen_at = now
        return None
    raised = raise_alerts(session, [Raise(bin_id, finding, now, now)], prefix=prefix)
    return session.get_one(Alert, raised[0].id) if raised else None


class Raise(NamedTuple):
    """An alert to raise: its bin and finding, when it started and when it was last seen (later
    when more of the batch that raises it confirmed it)."""

    bin_id: str
    finding: Finding
    at: datetime
    last_seen_at: datetime


RAISE_CHUNK: Final = 500
"""Alerts per INSERT: 9 parameters each, well under SQLite's 32,766 per statement."""


def raise_alerts(session: Session, raises: list[Raise], *, prefix: str) -> list[Alert]:
    """Raise these alerts, at most one per (bin, type), together: one INSERT … ON CONFLICT DO
    NOTHING, so the partial unique index decides as for one (an alert already live, or raised by
    another worker meanwhile, wins, and only its `last_seen_at` moves on); then the history and
    the deliveries of those raised, in bulk. The alerts raised, as detached objects (their
    columns only). The caller commits."""
    if not raises:
        return []
    sites = select(Bin.id, Bin.site_id).where(Bin.id.in_({r.bin_id for r in raises}))
    site_of = {bin_id: site_id for bin_id, site_id in session.execute(sites)}
    rows = [
        {
            "bin_id": r.bin_id,
            "site_id": site_of[r.bin_id],
            "type": r.finding.kind.value,
            "severity": SEVERITY[r.finding.kind].value,
            "state": "active",
            "detail": r.finding.detail,
            "detail_msg": None if r.finding.reason is None else r.finding.reason.dump(),
            "started_at": r.at,
            "last_seen_at": r.last_seen_at,
        }
        for r in raises
    ]
    table = _table(Alert)
    won: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), RAISE_CHUNK):
        statement = (
            _insert(session, table)
            .values(rows[start : start + RAISE_CHUNK])
            .on_conflict_do_nothing()
            .returning(table.c.id, table.c.bin_id, table.c.type)
        )
        won.update({(bin_id, kind): id_ for id_, bin_id, kind in session.execute(statement)})
    keys = [(r.bin_id, r.finding.kind.value) for r in raises]
    lost = [
        {"key_bin": bin_id, "key_type": kind, "seen": r.last_seen_at}
        for (bin_id, kind), r in zip(keys, raises, strict=True)
        if (bin_id, kind) not in won
    ]
    if lost:
        session.execute(
            update(table)
            .where(
                table.c.bin_id == bindparam("key_bin"),
                table.c.type == bindparam("key_type"),
                table.c.state.in_(LIVE_STATES),
                table.c.last_seen_at < bindparam("seen"),
            )
            .values(last_seen_at=bindparam("seen")),
            lost,
        )
    raised = [
        (Alert(id=won[key], **row), r.finding.reason or "", r.at)
        for key, row, r in zip(keys, rows, raises, strict=True)
        if key in won
    ]
    _record(session, raised, "raised", ALERTER, prefix)
    return [alert for alert, _, _ in raised]


def clear(
    session: Session, alert: Alert, *, now: datetime, note: Reason | str, prefix: str
) -> Alert | None:
    duration = max(0.0, (now - alert.started_at).total_seconds())
    changed = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.state.in_(LIVE_STATES))
        .values(state="cleared", cleared_at=now, duration_s=duration)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        return None
    _record(session, [(alert, note, now)], "cleared", ALERTER, prefix)
    return alert


def acknowledge(
    session: Session, alert_id: int, *, by: str, note: str, now: datetime
) -> Alert | None:
    """Acknowledge an active alert; None when it is already acknowledged or cleared."""
    changed = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.state == "active")
        .values(state="acknowledged", acknowledged_at=now, acknowledged_by=by)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        return None
    alert = session.get_one(Alert, alert_id)
    session.add(
        AlertEvent(
            alert_id=alert_id, at=now, kind="acknowledged", actor=by, note=note, exported=False
        )
    )
    session.commit()
    return alert


def _record(
    session: Session,
    changes: list[tuple[Alert, Reason | str, datetime]],
    kind: str,
    actor: str,
    prefix: str,
) -> None:
    """Append each change of `kind` (the alert, its note, when) to the history and queue its
    notices to people and its deliveries, each in one executemany; who hears of an alert is
    looked up once per site and severity."""
    if not changes:
        return
    events: list[dict[str, Any]] = []
    notices: list[notifications.Queued] = []
    deliveries: list[dict[str, Any]] = []
    people_of: dict[tuple[str, Severity], list[tuple[str, str, str]]] = {}
    recipients_of: dict[tuple[str, Severity], list[Recipient]] = {}
    for alert, note, now in changes:
        text, message = as_columns(note)
        events.append(
            {
                "alert_id": alert.id,
                "at": now,
                "kind": kind,
                "actor": actor,
                "note": text,
                "note_msg": message,
                "exported": False,
            }
        )
        key = (alert.site_id, Severity(alert.severity))
        if key not in people_of:
            people_of[key] = people(session, *key)
            recipients_of[key] = recipients(session, *key, prefix)
        for role, owner, owner_id in people_of[key]:
            notice = AlertNotice.of(alert, notice=kind, recipient=role).model_dump_json()
            subject = f"alert {alert.id} {kind} {role}"
            notices.append(notifications.Queued(owner, owner_id, subject, notice, now))
        for recipient in recipients_of[key]:
            for channel, target in (
                ("mqtt", recipient.mqtt_topic),
                ("webhook", recipient.webhook_url),
            ):
                if target:
                    deliveries.append(
                        {
                            "alert_id": alert.id,
                            "notice": kind,
                            "recipient": recipient.role,
                            "recipient_id": recipient.id,
                            "channel": channel,
                            "target": target,
                            "attempts": 0,
                            "done": False,
                        }
                    )
    session.execute(insert(_table(AlertEvent)), events)
    notifications.queue_many(session, notices, source="alert")
    if deliveries:
        session.execute(insert(_table(AlertDelivery)), deliveries)


# --- what the rules remember ----------------------------------------------------------------


class Remembered(NamedTuple):
    """A bin's `bin_health` row as the rules need it."""

    memory: Memory
    last_seen_at: datetime | None


def health(session: Session, bin_ids: Iterable[str]) -> dict[str, Remembered]:
    """What is remembered of these bins: one query, plain rows (no ORM objects to track). The
    rows are locked until the transaction ends (in bin order, so two callers cannot deadlock
    on them): ingest workers judging readings of one bin at once would each start from the
    same memory and the last to write would lose the other's (a seq of an open gap filled by
    one, still missing for the other). A row not there yet is not locked: `first_heard`.

    SQLite has no row locks and ignores FOR UPDATE, and its driver starts a transaction only at
    the first write, so the read would see what another worker is about to overwrite. There a
    write that changes nothing comes first: it takes the file's one write lock for the rest of
    the transaction, so the workers judge their batches one after the other, as on PostgreSQL."""
    table = _table(BinHealth)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(table).where(false()).values(bin_id=table.c.bin_id))
    rows = session.execute(
        select(table.c.bin_id, table.c.last_seen_at, *(table.c[c] for c in _MEMORY_COLUMNS))
        .where(table.c.bin_id.in_(sorted(bin_ids)))
        .order_by(table.c.bin_id)
        .with_for_update()
    )
    return {
        bin_id: Remembered(_memory(*memory), last_seen_at) for bin_id, last_seen_at, *memory in rows
    }


def first_heard(session: Session, bin_ids: Iterable[str]) -> None:
    """Empty `bin_health` rows for bins heard of the first time, where no other worker has made
    one meanwhile (the caller commits, then locks them with `health`)."""
    rows = [{"bin_id": bin_id} for bin_id in sorted(bin_ids)]
    if rows:
        session.execute(_insert(session, BinHealth).on_conflict_do_nothing(), rows)


def _insert(session: Session, model: type[Any] | Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can be told to do nothing on a conflict, in the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _memory(
    last_ts: datetime | None,
    last_seq: int | None,
    last_temp_c: float | None,
    full_since: datetime | None,
    gap_seqs: list[int] | None,
    gap_since: datetime | None,
) -> Memory:
    return Memory(last_ts, last_seq, last_temp_c, full_since, tuple(gap_seqs or ()), gap_since)


def memory_of(row: BinHealth | None) -> Memory:
    if row is None:
        return Memory()
    return _memory(*(getattr(row, column) for column in _MEMORY_COLUMNS))


def remember(
    session: Session,
    known: dict[str, Remembered],
    after: dict[str, tuple[Memory, datetime]],
) -> None:
    """Store each bin's memory after a batch and when it was last heard (`after`: bin → its
    memory and the batch's latest arrival from it), given what `health` returned (`known`).
    Only what changed is written (the memory, `last_seen_at`, or both; `last_seen_at` never
    moves back), each kind of change in one executemany for the whole batch."""
    inserts: list[dict[str, Any]] = []
    both: list[dict[str, Any]] = []
    memory_only: list[dict[str, Any]] = []
    seen_only: list[dict[str, Any]] = []
    for bin_id, (memory, seen_at) in after.items():
        before = known.get(bin_id)
        if before is None:
            inserts.append({"key": bin_id, "v_last_seen_at": seen_at, **_memory_row(memory)})
            continue
        seen = before.last_seen_at is None or seen_at > before.last_seen_at
        if memory != before.memory:
            if seen:
                both.append({"key": bin_id, "v_last_seen_at": seen_at, **_memory_row(memory)})
            else:
                memory_only.append({"key": bin_id, **_memory_row(memory)})
        elif seen:
            seen_only.append({"key": bin_id, "v_last_seen_at": seen_at})
    table = _table(BinHealth)
    memory_values: dict[str, Any] = {column: bindparam(f"v_{column}") for column in _MEMORY_COLUMNS}
    seen_value: dict[str, Any] = {"last_seen_at": bindparam("v_last_seen_at")}
    # Core, not the ORM's bulk statements: the same executemany without per-row bookkeeping.
    if inserts:
        session.execute(
            insert(table).values(bin_id=bindparam("key"), **seen_value, **memory_values), inserts
        )
    by_bin = update(table).where(table.c.bin_id == bindparam("key"))
    for rows, values in (
        (both, seen_value | memory_values),
        (memory_only, memory_values),
        (seen_only, seen_value),
    ):
        if rows:
            session.execute(by_bin.values(values), rows)


_MEMORY_COLUMNS: Final = (
    "last_ts",
    "last_seq",
    "last_temp_c",
    "full_since",
    "gap_seqs",
    "gap_since",
)


def _memory_row(memory: Memory) -> dict[str, Any]:
    return {
        "v_last_ts": memory.last_ts,
        "v_last_seq": memory.last_seq,
        "v_last_temp_c": memory.last_temp_c,
        "v_full_since": memory.full_since,
        "v_gap_seqs": list(memory.missing) or None,
        "v_gap_since": memory.gap_since,
    }


def remember_gap(session: Session, bin_id: str, memory: Memory) -> None:
    """Store the bin's open gap as `memory` has it (what the alerter's clock changes)."""
    gap = _memory_row(memory)
    session.execute(
        update(BinHealth)
        .where(BinHealth.bin_id == bin_id)
        .values(gap_seqs=gap["v_gap_seqs"], gap_since=gap["v_gap_since"])
    )


def refresh_seen(session: Session, seen: dict[LiveAlert, datetime]) -> None:
    """Move live alerts' `last_seen_at` on (what keeps a held condition from clearing), in one
    executemany for a whole batch; `seen` holds only values later than the alerts' own."""
    if seen:
        table = _table(Alert)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("key"))
            .values(last_seen_at=bindparam("seen")),
            [{"key": alert.id, "seen": at} for alert, at in seen.items()],
        )


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _in_service_health() -> Select[BinHealth]:
    """What the rules remember of the bins in service: a retired bin (or one at a retired site)
    is not expected to report, so the clock raises nothing for it (devices/retirement.py). A
    row whose bin is missing from the registry is kept, to fail loudly where it is handled."""
    return (
        select(BinHealth)
        .outerjoin(Bin, Bin.id == BinHealth.bin_id)
        .outerjoin(Site, Bin.site_id == Site.id)
        .where(in_service())  # true for a missing bin or site: their columns are NULL
    )


def silent_bins(session: Session, seen_before: datetime) -> list[BinHealth]:
    """Bins in service heard of once but not since `seen_before` (a bin never heard of is not
    yet deployed, not offline), nor reinstated since (its silence counts from then)."""
    reinstated_before = Bin.reinstated_at.is_(None) | (Bin.reinstated_at < seen_before)
    query = _in_service_health().where(BinHealth.last_seen_at < seen_before, reinstated_before)
    return list(session.scalars(query))


def full_since_before(session: Session, moment: datetime) -> list[BinHealth]:
    return list(session.scalars(_in_service_health().where(BinHealth.full_since <= moment)))


def gaps_open_since(session: Session, moment: datetime) -> list[str]:
    """Bins in service with a seq gap open since `moment` or before (the alerter locks and
    reads each again with `health`: a worker may have filled it meanwhile)."""
    query = _in_service_health().where(BinHealth.gap_since <= moment)
    return list(
        session.scalars(query.with_only_columns(BinHealth.bin_id).order_by(BinHealth.bin_id))
    )


def live_at_retired_bins(session: Session, kind: AlertType) -> list[Alert]:
    """Live alerts of one type at bins retired since they were raised."""
    query = (
        select(Alert)
        .join(Bin, Bin.id == Alert.bin_id)
        .join(Site, Bin.site_id == Site.id)
        .where(Alert.state.in_(LIVE_STATES), Alert.type == kind.value, ~in_service())
    )
    return list(session.scalars(query.order_by(Alert.id)))


def live(session: Session, kinds: Iterable[AlertType] | None = None) -> list[Alert]:
    query = select(Alert).where(Alert.state.in_(LIVE_STATES))
    if kinds is not None:
        query = query.where(Alert.type.in_([kind.value for kind in kinds]))
    return list(session.scalars(query.order_by(Alert.id)))


# --- deliveries and export ----------------------------------------------------------------------


def due_deliveries(session: Session, now: datetime) -> list[AlertDelivery]:
    return list(
        session.scalars(
            select(AlertDelivery)
            .where(
                AlertDelivery.done.is_(False),
                (AlertDelivery.next_at.is_(None)) | (AlertDelivery.next_at <= now),
            )
            .order_by(AlertDelivery.id)
        )
    )


def unexported(session: Session, limit: int) -> list[AlertEvent]:
    return list(
        session.scalars(
            select(AlertEvent)
            .where(AlertEvent.exported.is_(False))
            .options(selectinload(AlertEvent.alert))
            .order_by(AlertEvent.id)
            .limit(limit)
        )
    )


# --- the API's reads ------------------------------------------------------------------------------


ALERT_KEYS = (Alert.started_at, Alert.id)
"""The order of the alert list, newest first (api.paging makes a cursor of an alert's)."""


def list_alerts(
    session: Session,
    *,
    state: str | None = None,
    severity: str | None = None,
    site_id: str | None = None,
    kind: str | None = None,
    bin_id: str | None = None,
    visible_sites: frozenset[str] | None = None,
    limit: int = 100,
    offset: int = 0,
    after: tuple[datetime, int] | None = None,
    count: bool = True,
) -> Slice[Alert]:
    """A page of alerts, newest first (by `started_at`, then id), and the total matching the
    filters (`count`); `after` the (started_at, id) of the last alert of the previous page;
    `visible_sites` (None: all) is the caller's scope."""
    query = select(Alert)
    if visible_sites is not None:
        query = query.where(Alert.site_id.in_(visible_sites))
    for column, value in (
        (Alert.state, state),
        (Alert.severity, severity),
        (Alert.site_id, site_id),
        (Alert.type, kind),
        (Alert.bin_id, bin_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return paged(
        session,
        query,
        keys=ALERT_KEYS,
        descending=True,
        limit=limit,
        offset=offset,
        after=after,
        count=count,
    )


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id, options=[selectinload(Alert.events)])
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert


def notifications_of(session: Session, alert_id: int) -> list[dict[str, Any]]:
    """What went to people's channels about the alert: each notice, role, channel and outcome
    (read from the subject `alert <id> <notice> <role>` that `_record` gave it), never a
    robot's URL or secret."""
    rows = session.execute(
        select(Notification, ContactChannel)
        .join(ContactChannel, ContactChannel.id == Notification.channel_id)
        .where(Notification.source == "alert", Notification.subject.like(f"alert {alert_id} %"))
        .order_by(Notification.id)
    )
    found: list[dict[str, Any]] = []
    for row, channel in rows:
        _alert, _id, notice, role = row.subject.split(" ")
        found.append(
            {
                "notice": notice,
                "recipient": role,
                "channel": channel.kind,
                "contact": f"{channel.owner} {channel.owner_id}",
                "locale": channel.locale,
                "attempts": row.attempts,
                "delivered_at": row.delivered_at,
                "next_at": row.next_at,
                "error": row.error,
            }
        )
    return found


def deliveries_of(session: Session, alert_id: int) -> list[AlertDelivery]:
    return list(
        session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.alert_id == alert_id)
            .order_by(AlertDelivery.id)
        )
    )
