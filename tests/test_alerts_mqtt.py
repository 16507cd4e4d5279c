"""People receive alerts over MQTT with the accounts `binwatch mqtt-auth issue` gives them: a
manager's account for its sites, an operator's for the sites it serves, an admin's for the city;
an account scoped elsewhere hears nothing, even subscribed to every alert. Real Mosquitto with
the exported password file and ACL, real ingest raising the alert, the alerter delivering it."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.settings import Settings
from devices.contract import Event, TopicKind, Topics
from devices.registry import BinTags
from tests.collection_helpers import Recorder, recording, running_alerter
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.test_alerts import BIN, alert_ingest
from tests.test_mqtt_auth import secured_broker

pytestmark = pytest.mark.servers

# After the expected deliveries, how long an account that must hear nothing is watched more (a
# delivery on loopback takes milliseconds).
QUIET_S = 1.0


def test_scoped_accounts_receive_their_sites_alerts_and_no_others(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    tags = pilot_bins[BIN]
    elsewhere = next(t for t in pilot_bins.values() if t.operator != tags.operator)
    readers = {
        "manager-here": (tags.site,),
        "manager-elsewhere": (elsewhere.site,),
        "admin-city": (),
        f"operator-{tags.operator}": (),
        f"operator-{elsewhere.operator}": (),
    }
    services = {name: () for name in (BIN, "ingest", "alerter")}
    prefix = settings.topic_prefix
    # The fire's hold passes on the alerter's clock: the bin must not count as silent then.
    settings = settings.model_copy(update={"alert_offline_intervals": 1000})
    with secured_broker(settings, tmp_path, {**services, **readers}) as broker, ExitStack() as on:

        def as_(user: str) -> Settings:
            return settings.model_copy(update={"mqtt_url": broker.url(user)})

        heard: dict[str, Recorder] = {
            user: on.enter_context(recording(as_(user), f"{prefix}/alerts/#")) for user in readers
        }
        alerter = on.enter_context(running_alerter(as_("alerter")))
        on.enter_context(alert_ingest(as_("ingest")))
        event = Event(ts=datetime.now(UTC), type="fire", detail="smoke")
        topic = Topics(prefix).bin(BIN, TopicKind.event)
        publish_all(as_(BIN), [(topic, event.model_dump_json(exclude_none=True).encode())])

        def delivered() -> bool:
            alerter.tick(datetime.now(UTC))  # delivers once the hook has raised the alert
            return bool(heard["admin-city"].messages)

        wait_for(delivered, timeout=15, what="the alert delivered to the city's admin")
        for user in ("manager-here", f"operator-{tags.operator}"):
            wait_for(lambda u=user: heard[u].messages, timeout=10, what=f"the alert for {user}")  # type: ignore[misc]
        time.sleep(QUIET_S)
    for user in ("manager-here", "admin-city", f"operator-{tags.operator}"):
        [(got_topic, body)] = heard[user].messages
        notice = json.loads(body)
        assert got_topic == f"{prefix}/alerts/{tags.site}"
        assert (notice["type"], notice["notice"], notice["bin_id"]) == ("fire", "raised", BIN)
    for user in ("manager-elsewhere", f"operator-{elsewhere.operator}"):
        assert heard[user].messages == [], f"{user} heard another site's alert"
