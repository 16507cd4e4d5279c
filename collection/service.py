"""`binwatch collector`'s loop: everything about collection requests that is not a reading
arriving (ingest's hook) or a person acting (the API).

Each `tick(now)` dispatches open requests (MQTT, then the operator's webhook with retries),
verifies or disputes completed ones from the readings that followed, escalates overdue ones
along the grid (the area contact's webhook retried the same way), runs the kitchen daily
clearing and the forecast, and copies new audit events to InfluxDB. Webhooks are only queued
here (core/webhook_lanes.py): their attempts run in a lane per receiver, which records each
outcome, so the tick never waits on a receiver. Each request, bin or event is handled on its
own (`TickingService.item`): one that fails is logged and counted, the others go on. All of it
is driven by the `now` it is given, so tests call `tick` with the moment they want instead of
sleeping; state lives in the database, so several collectors (or a restarted one) do no harm:
every change is a conditional UPDATE.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from collection import plans, rules, series, store, texts
from collection.lifecycle import COLLECTOR, OPEN, Status, TransitionRefused
from collection.models import CollectionEvent, CollectionRequest, RoutePlan
from collection.rules import Policy, Rule
from core.influx import InfluxClient
from core.publisher import Publisher, PublishFailed
from core.reasons import Reason
from core.settings import Settings
from core.sql import session_factory
from core.ticker import Step, TickingService
from core.webhook_lanes import WebhookLanes
from core.webhooks import Outcome, retry_delay
from devices import notifications
from devices.contract import Topics
from devices.messages import Dispatch, Escalation
from devices.models import AreaContact
from devices.notifications import Notifier
from devices.registry import BinTags, bin_tags
from devices.retirement import retired_bin_ids

log = logging.getLogger(__name__)

# The forecast reads the whole fleet's recent history: often enough for fill rates that change
# over hours, rare enough to cost InfluxDB little.
FORECAST_EVERY: Final = timedelta(minutes=10)
# Audit events copied to InfluxDB per write.
EXPORT_BATCH: Final = 1000
# Where an escalation note's webhook outcome starts: it is the note's last part, after the
# area (": ") or after what MQTT did ("; ").
_WEBHOOK_PART: Final = re.compile(r"(?:: |; )(?=webhook )")


class Collector(TickingService):
    """One collector. `tick(now)` does one round of everything; `run(stop)` ticks until told."""

    name = "collector"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        influx: InfluxClient,
        publisher: Publisher,
        webhooks: WebhookLanes,
        notifier: Notifier,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.policy = Policy.of(settings.collection)
        self.evidence = rules.Evidence.of(settings.collection)
        self.sessions = session_factory(engine)
        self.influx = influx
        self.publisher = publisher
        self.webhooks = webhooks
        self.notifier = notifier
        self.topics = Topics(settings.topic_prefix)
        self._kitchen_round: datetime | None = None
        self._next_forecast: datetime | None = None
        self._planned_day: date | None = None
        self._tags: dict[str, BinTags] = {}

    def steps(self) -> list[Step]:
        return [
            self.dispatch,
            self.deliver_webhooks,
            self.verify,
            self.escalate,
            self.deliver_escalation_webhooks,
            self.notify,
            self.kitchen_daily,
            self.forecast,
            self.plan_routes,
            self.publish_routes,
            self.export,
        ]

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(self, now: datetime) -> None:
        """Mark open requests dispatched, then publish every dispatched one not yet on the
        broker. Marking first means an operator that answers at once finds it dispatched."""
        with self.sessions() as session:
            for request_id in [r.id for r in store.with_status(session, [Status.open])]:
                with self.item("dispatch", f"request {request_id}", session):
                    try:
                        store.transition(
                            session, request_id, Status.dispatched, actor=COLLECTOR, now=now
                        )
                    except TransitionRefused:
                        continue  # acknowledged or cancelled meanwhile: nothing to send
            for request in store.with_status(session, [Status.dispatched]):
                if request.published_at is not None:
                    continue
                with self.item("dispatch", f"request {request.id}", session):
                    body = Dispatch.of(request).model_dump_json().encode()
                    try:
                        self.publisher.publish(self.topics.dispatch(request.operator_id), body)
                    except PublishFailed as exc:
                        store.record_delivery(session, request, dispatch_error=f"MQTT: {exc}")
                        continue
                    store.record_delivery(session, request, published_at=now)

    def deliver_webhooks(self, now: datetime) -> None:
        """POST each dispatched request to its operator's webhook, retrying with backoff until
        delivered or `collection_webhook_attempts` are spent; the request shows the outcome.
        An operator without a webhook secret yet gets nothing (never an unsigned POST): the
        request says it waits, and the first attempt follows once the secret is set."""
        attempts = self.settings.collection.webhook_attempts
        with self.sessions() as session:
            waiting = store.with_status(session, [Status.dispatched, Status.acknowledged])
            for request in waiting:
                if request.webhook_delivered_at or request.webhook_attempts >= attempts:
                    continue
                if request.webhook_next_at is not None and request.webhook_next_at > now:
                    continue
                key = ("dispatch", request.id)
                if self.webhooks.busy(key):
                    continue
                with self.item("deliver_webhooks", f"request {request.id}", session):
                    operator = store.operator(session, request.operator_id)
                    if not operator.webhook_url:
                        continue
                    if not operator.webhook_secret:
                        said = _no_secret("operator", operator.id).text
                        if request.dispatch_error != said:
                            store.record_delivery(session, request, dispatch_error=said)
                        continue
                    self.webhooks.submit(
                        key,
                        operator.webhook_url,
                        Dispatch.of(request).model_dump_json().encode(),
                        secret=operator.webhook_secret,
                        event="collection.dispatch",
                        done=partial(
                            self._webhook_done,
                            (CollectionRequest, request.id),
                            request.webhook_attempts + 1,
                            now,
                        ),
                    )

    def _webhook_done(
        self,
        row: tuple[type[CollectionRequest] | type[RoutePlan], int],
        tried: int,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Record the `tried`-th attempt of a request's dispatch webhook or a plan's routes
        webhook (in its lane's thread): delivered, another attempt later, or given up."""
        model, row_id = row
        is_request = model is CollectionRequest
        label = f"{'request' if is_request else 'plan'} {row_id}"
        attempts = self.settings.collection.webhook_attempts
        step = "deliver_webhooks" if is_request else "publish_routes"
        with self.item(step, label), self.sessions() as session:
            target = cast(CollectionRequest | RoutePlan, session.get_one(model, row_id))
            if outcome.delivered:
                store.record_delivery(
                    session, target, webhook_attempts=tried, webhook_delivered_at=now
                )
                return
            final = tried >= attempts or not outcome.retryable
            error = f"webhook: {outcome.error}"
            if final:
                error = f"webhook: gave up after {tried} attempt(s): {outcome.error}"
                log.warning("%s: %s", label, error)
            store.record_delivery(
                session,
                target,
                webhook_attempts=attempts if final else tried,
                webhook_next_at=None if final else now + retry_delay(tried),
                **{"dispatch_error" if is_request else "publish_error": error},
            )

    # --- verification and escalation -------------------------------------------------------

    def verify(self, now: datetime) -> None:
        """Completed requests become verified once a reading received after the completion
        shows the bin emptied, and disputed if the window closes without one."""
        with self.sessions() as session:
            for request in store.with_status(session, [Status.completed]):
                with self.item("verify", f"request {request.id}", session):
                    self._verify(session, request, now)

    def _verify(self, session: Session, request: CollectionRequest, now: datetime) -> None:
        """One completed request's verdict, if the readings give one yet."""
        assert request.completed_at is not None
        window_end = min(now, request.completed_at + self.policy.verify_window)
        lowest = series.lowest_fill_after(
            self.influx, request.bin_id, completed_at=request.completed_at, until=window_end
        )
        verdict = self.policy.verdict(
            lowest_fill_after=lowest, completed_at=request.completed_at, now=now
        )
        if verdict is None:
            return
        window, emptied = self.policy.verify_window, self.policy.emptied_pct
        note = (
            Reason.of("request.verify_none", window=window, emptied=emptied)
            if lowest is None
            else Reason.of("request.verify_lowest", fill=lowest, window=window, emptied=emptied)
        )
        store.transition(
            session,
            request.id,
            verdict,
            actor=COLLECTOR,
            now=now,
            note=note,
            completed_fill_pct=lowest,
        )

    def escalate(self, now: datetime) -> None:
        """Overdue requests climb the grid one level at a time, each level notified once (its
        webhook retried by `deliver_escalation_webhooks` until delivered)."""
        with self.sessions() as session:
            for request in store.overdue(session, now):
                with self.item("escalate", f"request {request.id}", session):
                    self._escalate(session, request, now)

    def _escalate(self, session: Session, request: CollectionRequest, now: datetime) -> None:
        target = self.policy.escalation_level(due_at=request.due_at, now=now)
        for level in range(request.escalation_level + 1, target + 1):
            area_id, contact = store.escalation_contact(session, request, level)
            message = Escalation.of(request, level=level, area_id=area_id)
            # Queued in the escalation's transaction: gone with it if another collector won.
            people = notifications.queue(
                session,
                owner="area",
                owner_id=area_id,
                source="escalation",
                subject=f"request {request.id} level {level}",
                message=message.model_dump_json(),
                now=now,
            )
            note, webhook = self._notify(message, contact, people, now)
            if not store.escalate(
                session, request, level=level, now=now, actor=COLLECTOR, note=note, **webhook
            ):
                break

    def _notify(
        self,
        message: Escalation,
        contact: AreaContact | None,
        people: list[str],
        now: datetime,
    ) -> tuple[Reason, dict[str, Any]]:
        """Tell the area's contact over MQTT, and queue its webhook (`deliver_escalation_webhooks`
        makes the first attempt in the same tick); `people` are the kinds of its channels the
        escalation was queued for (`notify` sends them). Returns the note (what reached whom)
        for the audit event and the webhook's state for the same event."""
        who = "escalation.community" if message.level == 1 else "escalation.street"
        has_contact = contact is not None and bool(contact.mqtt_topic or contact.webhook_url)
        if not (has_contact or people):
            nobody = Reason.of(f"{who}_unknown", level=message.level, area=message.area_id)
            return nobody, {}
        body = message.model_dump_json().encode()
        told: list[Reason] = []
        webhook: dict[str, Any] = {}
        if contact is not None and contact.mqtt_topic:
            try:
                self.publisher.publish(contact.mqtt_topic, body)
                told.append(Reason.of("escalation.published", topic=contact.mqtt_topic))
            except PublishFailed as exc:
                told.append(Reason.of("escalation.mqtt_failed", error=str(exc)))
        if people:
            told.append(Reason.of("escalation.people_queued", channels=", ".join(people)))
        if contact is not None and contact.webhook_url:
            webhook = {"webhook_attempts": 0, "webhook_next_at": now}
            told.append(Reason("webhook.queued"))
        return Reason.of(who, level=message.level, area=message.area_id, told=told), webhook

    def deliver_escalation_webhooks(self, now: datetime) -> None:
        """POST again each escalation whose webhook failed and whose next try is due: the body
        of the first attempt, to the contact's current URL with its current secret, backing off
        until delivered or `collection_webhook_attempts` are spent. The escalation event keeps
        the state and its note says the latest outcome. Like dispatch webhooks, nothing is
        claimed: two collectors may both POST an attempt (receivers key on `request_id` and
        `level`). A request no longer waiting for a crew is not chased further. A contact
        without a webhook secret yet waits, its note says so, and nothing is POSTed unsigned."""
        with self.sessions() as session:
            for event in store.escalation_webhooks_due(session, now):
                key = ("escalation", event.id)
                if self.webhooks.busy(key):
                    continue
                with self.item("deliver_escalation_webhooks", f"event {event.id}", session):
                    self._escalation_webhook(session, event, key, now)

    def _escalation_webhook(
        self, session: Session, event: CollectionEvent, key: tuple[str, int], now: datetime
    ) -> None:
        request = event.request
        level = event.escalation_level or 1
        area_id, contact = store.escalation_contact(session, request, level)
        done = Status(request.status) not in OPEN
        if done or contact is None or not contact.webhook_url:
            attempts = event.webhook_attempts
            said = (
                Reason.of("webhook.request_closed", attempts=attempts, status=request.status)
                if done
                else Reason.of("webhook.no_url", attempts=attempts, area=area_id)
            )
            store.record_escalation_webhook(
                session, event, webhook_next_at=None, **_with_webhook(event, said)
            )
            return
        if not contact.webhook_secret:
            note = _with_webhook(event, _no_secret("area", area_id))
            if event.note != note["note"]:
                store.record_escalation_webhook(session, event, **note)
            return
        message = Escalation.of(request, level=level, area_id=area_id, status=event.to_status)
        self.webhooks.submit(
            key,
            contact.webhook_url,
            message.model_dump_json().encode(),
            secret=contact.webhook_secret,
            event="collection.escalation",
            done=partial(
                self._escalation_webhook_done, event.id, message, event.webhook_attempts + 1, now
            ),
        )

    def _escalation_webhook_done(
        self, event_id: int, message: Escalation, tried: int, now: datetime, outcome: Outcome
    ) -> None:
        """Record the `tried`-th attempt of an escalation webhook (in its lane's thread)."""
        step = "deliver_escalation_webhooks"
        with self.item(step, f"event {event_id}"), self.sessions() as session:
            event = session.get_one(CollectionEvent, event_id)
            state, said = self._escalation_attempt(message, outcome, tried=tried, now=now)
            store.record_escalation_webhook(session, event, **_with_webhook(event, said), **state)

    def _escalation_attempt(
        self, message: Escalation, outcome: Outcome, *, tried: int, now: datetime
    ) -> tuple[dict[str, Any], Reason]:
        """What the `tried`-th attempt of an escalation webhook leaves on its event, and the
        note's words for it (always starting with "webhook ")."""
        if outcome.delivered:
            said = (
                Reason("webhook.delivered")
                if tried == 1
                else Reason.of("webhook.delivered_at", attempt=tried)
            )
            return {
                "webhook_attempts": tried,
                "webhook_next_at": None,
                "webhook_delivered_at": now,
            }, said
        if tried >= self.settings.collection.webhook_attempts or not outcome.retryable:
            said = Reason.of("webhook.gave_up", attempts=tried, error=str(outcome.error))
            log.warning(
                "request %d, escalation %d: %s", message.request_id, message.level, said.text
            )
            return {"webhook_attempts": tried, "webhook_next_at": None}, said
        next_at = now + retry_delay(tried)
        local = next_at.astimezone(ZoneInfo(self.settings.timezone))
        said = Reason.of("webhook.failed", attempt=tried, error=str(outcome.error), at=local)
        return {"webhook_attempts": tried, "webhook_next_at": next_at}, said

    def notify(self, now: datetime) -> None:
        """Every due escalation to people (robots, e-mail), in its channel's language."""
        render = partial(texts.render, timezone=self.settings.timezone)
        self.notifier.deliver(self, self.sessions, now, source="escalation", render=render)

    # --- rules that run on the clock -------------------------------------------------------

    def kitchen_daily(self, now: datetime) -> None:
        """Once per local day at `collection_kitchen_hour`: every kitchen bin that received
        deposits since the previous round and was not emptied since gets a request. A collector
        started late runs the latest round it missed, once (the database remembers)."""
        round_at = rules.last_local_hour(
            now, hour=self.settings.collection.kitchen_hour, timezone=self.settings.timezone
        )
        if round_at == self._kitchen_round:
            return
        deposits = series.last_kitchen_deposits(
            self.influx, since=round_at - timedelta(days=1), until=round_at
        )
        with self.sessions() as session:
            done = store.kitchen_requested_since(session, round_at)
            emptied = store.last_emptied(session)
            for bin_id in store.kitchen_bins(session):
                if bin_id in done or not rules.kitchen_needs_clearing(
                    last_deposit_at=deposits.get(bin_id),
                    last_emptied_at=emptied.get(bin_id),
                    round_at=round_at,
                ):
                    continue
                with self.item("kitchen_daily", f"bin {bin_id}", session):
                    reason = Reason("request.kitchen_daily")
                    self._open(session, now, bin_id, Rule.kitchen_daily, reason)
        self._kitchen_round = round_at

    def forecast(self, now: datetime) -> None:
        """Bins whose fill rate says, on enough evidence, that they will be full before the
        operators' next working day get their request now; its reason says how sure."""
        if self._next_forecast is not None and now < self._next_forecast:
            return
        fills = series.recent_fill(self.influx, now)
        with self.sessions() as session:
            retired = retired_bin_ids(session)  # their last readings may still say "filling"
            for bin_id, points in fills.items():
                if bin_id in retired:
                    continue
                with self.item("forecast", f"bin {bin_id}", session):
                    found = rules.forecast_fires(
                        points,
                        now=now,
                        work_start_hour=self.settings.collection.work_start_hour,
                        timezone=self.settings.timezone,
                        evidence=self.evidence,
                    )
                    if found is not None:
                        reason = found.describe(self.settings.timezone)
                        fill = points[-1].fill_pct
                        self._open(session, now, bin_id, Rule.forecast, reason, fill)
        self._next_forecast = now + FORECAST_EVERY

    def _open(
        self,
        session: Session,
        now: datetime,
        bin_id: str,
        rule: Rule,
        reason: Reason,
        fill: float | None = None,
    ) -> None:
        opened = store.open_request(
            session,
            bin_id=bin_id,
            rule=rule,
            reason=reason,
            now=now,
            policy=self.policy,
            actor=COLLECTOR,
            fill_pct=fill,
        )
        if opened.created:
            log.info("request %d for %s (%s)", opened.request.id, bin_id, rule.value)

    # --- planned routes --------------------------------------------------------------------

    def plan_routes(self, now: datetime) -> None:
        """Once per local day from `route_plan_hour` (when set): plan the day of every operator that has
        vehicles and no plan for it yet (the database remembers, so a restarted collector, or a
        dispatcher who planned already through the API, is not planned over)."""
        hour = self.settings.route.plan_hour
        local = now.astimezone(ZoneInfo(self.settings.timezone))
        if hour is None or local.hour < hour or self._planned_day == local.date():
            return
        fills: plans.Fills | None = None
        fetched = False
        with self.sessions() as session:
            for operator_id in store.operators_to_plan(session, local.date()):
                with self.item("plan_routes", f"operator {operator_id}", session):
                    if not fetched:  # once for every operator, and not at all when none plans
                        fills, fetched = plans.fills_or_none(self.influx, now), True
                    plan = plans.plan_operator_day(
                        session,
                        operator_id,
                        local.date(),
                        settings=self.settings,
                        now=now,
                        actor=str(COLLECTOR),
                        fills=fills,
                    )
                    log.info("routes of %s for %s: %s", operator_id, plan.day, plan.note)
        self._planned_day = local.date()

    def publish_routes(self, now: datetime) -> None:
        """Publish every stored plan not on the broker yet (made by the API or `binwatch routes
        plan`) to its operator, then POST it to the operator's webhook like a dispatch, retried
        with backoff. An outbox: a plan stored while the broker was down goes out later."""
        attempts = self.settings.collection.webhook_attempts
        with self.sessions() as session:
            for plan in store.route_plans_to_deliver(session, attempts, now):
                with self.item("publish_routes", f"plan {plan.id}", session):
                    body = plans.routes_message(plan).model_dump_json().encode()
                    if plan.published_at is None:
                        try:
                            self.publisher.publish(self.topics.routes(plan.operator_id), body)
                        except PublishFailed as exc:
                            store.record_delivery(session, plan, publish_error=f"MQTT: {exc}")
                            continue
                        store.record_delivery(session, plan, published_at=now)
                    operator = store.operator(session, plan.operator_id)
                    key = ("routes", plan.id)
                    if not operator.webhook_url or not operator.webhook_secret:
                        continue
                    if self.webhooks.busy(key):
                        continue
                    self.webhooks.submit(
                        key,
                        operator.webhook_url,
                        body,
                        secret=operator.webhook_secret,
                        event="collection.routes",
                        done=partial(
                            self._webhook_done, (RoutePlan, plan.id), plan.webhook_attempts + 1, now
                        ),
                    )

    # --- InfluxDB --------------------------------------------------------------------------

    def export(self, _now: datetime) -> None:
        """Copy audit events InfluxDB does not have yet (an outbox: nothing is lost while it is
        down, and a copy made twice lands on the same point). An event whose point cannot be
        made stays in the outbox, counted; the batch's others are copied, and the step stops
        there until the next tick (the same bad event would come first again)."""
        with self.sessions() as session:
            while events := store.unexported_events(session, EXPORT_BATCH):
                if not self._tags or any(e.request.bin_id not in self._tags for e in events):
                    self._tags = bin_tags(session)
                made: list[tuple[CollectionEvent, str]] = []
                for e in events:
                    with self.item("export", f"event {e.id}"):
                        made.append(
                            (e, series.event_point(e, e.request, self._tags.get(e.request.bin_id)))
                        )
                if made:
                    self.influx.write([line for _e, line in made])
                    store.mark_exported(session, [e for e, _line in made])
                if len(made) < len(events):
                    return


def _no_secret(kind: str, ident: str) -> Reason:
    return Reason.of("webhook.no_secret", kind=kind, id=ident)


def _with_webhook(event: CollectionEvent, said: Reason) -> dict[str, Any]:
    """The escalation's note (text and message) with its webhook outcome replaced by `said`;
    what reached whom over MQTT stays. A note from before notes were structured keeps no
    message: its text is edited as text."""
    note = Reason.load(event.note_msg)
    if note is not None and "told" in note.args:
        told = [part for part in _told(note) if not part.id.startswith("webhook.")]
        edited = Reason(note.id, {**note.args, "told": [p.dump() for p in [*told, said]]})
        return {"note": edited.text, "note_msg": edited.dump()}
    part = _WEBHOOK_PART.search(event.note)
    text = (event.note[: part.end()] if part else event.note + "; ") + said.text
    return {"note": text, "note_msg": None}


def _told(note: Reason) -> list[Reason]:
    parts = [Reason.load(part) for part in cast(list[dict[str, Any]], note.args["told"])]
    return [part for part in parts if part is not None]
