"""The threshold rule, run by ingest on every stored batch (`Ingestor(on_stored=...)`): a reading
at or over its bin's threshold ensures the bin has an open request.

Thresholds are cached in memory and refreshed like ingest's registry cache, so a batch of
readings under their thresholds costs no SQL at all; only bins over theirs reach the database,
which decides (a unique index) whether a request is created. Running twice on the same batch,
or on two workers at once, therefore changes nothing: the hook is idempotent, as ingest needs
(it retries the hook while it raises, before acknowledging the batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from collection import store
from collection.lifecycle import COLLECTOR
from collection.models import CollectionRequest
from collection.rules import Policy, Rule, over_threshold
from core.reasons import Reason
from core.settings import Settings
from core.sql import database_engine, session_factory
from devices.contract import Reading

log = logging.getLogger(__name__)

# Same as ingest's registry refresh: a changed threshold takes effect within this.
REFRESH_S: Final = 10.0


class ThresholdHook:
    """Callable as ingest's `on_stored`; `close()` releases its database engine."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._engine = database_engine(settings)
        self._sessions = session_factory(self._engine)
        self._policy = Policy.of(settings.collection)
        self._clock = clock
        self._thresholds: dict[str, float] = {}
        self._next_refresh = 0.0

    def close(self) -> None:
        self._engine.dispose()

    def __call__(self, readings: list[tuple[str, Reading]]) -> None:
        if time.monotonic() >= self._next_refresh:
            self._refresh()
        fullest: dict[str, float] = {}
        for bin_id, reading in readings:
            threshold = self._thresholds.get(bin_id)
            if threshold is not None and over_threshold(reading.fill_pct, threshold):
                fullest[bin_id] = max(reading.fill_pct, fullest.get(bin_id, 0.0))
        if not fullest:
            return
        now = self._clock()
        with self._sessions() as session:
            busy = store.busy_bins(session, fullest)
            created: list[CollectionRequest] = []
            for bin_id, fill in fullest.items():
                if bin_id in busy:
                    continue
                threshold = self._thresholds[bin_id]
                opened = store.open_request(
                    session,
                    bin_id=bin_id,
                    rule=Rule.threshold,
                    reason=Reason("request.threshold", {"fill": fill, "threshold": threshold}),
                    now=now,
                    policy=self._policy,
                    actor=COLLECTOR,
                    fill_pct=fill,
                    commit=False,
                )
                if opened.created:
                    created.append(opened.request)
            session.commit()
        for request in created:
            log.info("request %d for %s (%s)", request.id, request.bin_id, request.reason)

    def _refresh(self) -> None:
        try:
            with self._sessions() as session:
                self._thresholds = store.thresholds(session)
        except Exception:
            if not self._thresholds:
                raise  # nothing known yet: ingest retries the batch, as for its own writes
            log.exception("could not read thresholds; keeping %d known", len(self._thresholds))
        self._next_refresh = time.monotonic() + REFRESH_S
