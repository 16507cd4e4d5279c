"""MQTT credentials and the broker's password and ACL files.

Every bin logs in as its own id with a random password issued once (only Mosquitto's `$7$` hash
is kept), and the ACL lets it publish only under `<prefix>/bins/<its id>/` and read only its own
`cmd` topic, so a bin cannot speak for another. The services get exactly what they need:

| account     | may                                                                     |
|-------------|-------------------------------------------------------------------------|
| `ingest`    | read every bin's telemetry, event and status                            |
| `collector` | write every operator's dispatch topic, and the grid's escalation topics |
| `alerter`   | write `<prefix>/alerts/#`                                               |
| `simulator` | write every bin's topics and read the dispatches: it impersonates the   |
|             | whole fleet and the operators' crews, so it is for demos and tests only; |
|             | read and write its faults topic (`binwatch demo --inject`)              |
| `operator-<id>` | read its own operator's dispatch topic                                  |

Mosquitto reads both files at start and on SIGHUP; `export` writes them atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from binwatch.errors import NotFound
from devices.models import AreaContact, Bin, Operator
from devices.security_models import MqttCredential
from security.hashing import mosquitto_hash, new_secret
from simulator.faults import faults_topic

SERVICES: Final = ("ingest", "collector", "alerter", "simulator")
OPERATOR_PREFIX: Final = "operator-"
PASSWORD_FILE: Final = "passwords"
ACL_FILE: Final = "acl"


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    password: str  # shown once


def issue(session: Session, username: str, *, now: datetime) -> Issued:
    """A new random password for `username` (a bin id, a service or `op-<operator id>`),
    replacing any earlier one."""
    kind, bin_id = "service", None
    if username not in SERVICES:
        if username.startswith(OPERATOR_PREFIX):
            if session.get(Operator, username.removeprefix(OPERATOR_PREFIX)) is None:
                raise NotFound(f"no operator for account {username!r}")
        elif session.get(Bin, username) is not None:
            kind, bin_id = "bin", username
        else:
            raise NotFound(f"{username!r} is neither a registered bin, an operator nor a service")
    password = new_secret()
    credential = session.get(MqttCredential, username) or MqttCredential(username=username)
    credential.kind, credential.bin_id = kind, bin_id
    credential.password_hash = mosquitto_hash(password)
    credential.created_at = now
    session.add(credential)
    session.commit()
    return Issued(username, password)


def issue_missing_bins(session: Session, *, now: datetime) -> list[Issued]:
    """Credentials for every registered bin that has none yet (after a fleet import)."""
    have = set(session.scalars(select(MqttCredential.bin_id).where(MqttCredential.bin_id != None)))  # noqa: E711
    return [
        issue(session, b, now=now)
        for b in session.scalars(select(Bin.id).order_by(Bin.id))
        if b not in have
    ]


def revoke(session: Session, username: str) -> None:
    credential = session.get(MqttCredential, username)
    if credential is None:
        raise NotFound(f"no MQTT account {username!r}")
    session.delete(credential)
    session.commit()


def acl_text(session: Session, prefix: str) -> str:
    """The Mosquitto ACL: explicit `user` sections only (no `pattern` lines, which would apply
    to the service accounts too), and nothing at all for anonymous clients."""
    bins = f"{prefix}/bins"
    escalations = sorted(
        topic for topic in session.scalars(select(AreaContact.mqtt_topic)) if topic
    )
    sections: dict[str, list[str]] = {
        "ingest": [f"topic read {bins}/+/{kind}" for kind in ("telemetry", "event", "status")],
        "collector": [f"topic write {prefix}/operators/+/dispatch"]
        + [f"topic write {topic}" for topic in escalations],
        "alerter": [f"topic write {prefix}/alerts/#"],
        "simulator": [
            f"topic write {bins}/#",
            f"topic read {prefix}/operators/+/dispatch",
            f"topic readwrite {faults_topic(prefix)}",
        ],
    }
    for credential in session.scalars(select(MqttCredential).order_by(MqttCredential.username)):
        name = credential.username
        if credential.kind == "bin":
            sections[name] = [f"topic write {bins}/{name}/#", f"topic read {bins}/{name}/cmd"]
        elif name.startswith(OPERATOR_PREFIX):
            operator = name.removeprefix(OPERATOR_PREFIX)
            sections[name] = [f"topic read {prefix}/operators/{operator}/dispatch"]
    lines = [f"# binwatch MQTT ACL for prefix {prefix}: generated, do not edit", ""]
    for name, rules in sections.items():
        lines += [f"user {name}", *rules, ""]
    return "\n".join(lines)


def password_text(session: Session) -> str:
    rows = session.scalars(select(MqttCredential).order_by(MqttCredential.username))
    return "".join(f"{row.username}:{row.password_hash}\n" for row in rows)


def export(session: Session, directory: Path, *, prefix: str) -> tuple[Path, Path]:
    """Write `passwords` and `acl` into `directory` (each replaced atomically, readable by the
    owner only); send Mosquitto a SIGHUP to load them."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        (PASSWORD_FILE, password_text(session)),
        (ACL_FILE, acl_text(session, prefix)),
    ):
        path = directory / name
        scratch = path.with_suffix(".tmp")
        scratch.write_text(text)
        os.chmod(scratch, 0o600)
        scratch.replace(path)
        written.append(path)
    return written[0], written[1]
