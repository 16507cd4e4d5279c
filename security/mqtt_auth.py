"""MQTT credentials and the broker's password and ACL files.

Every bin logs in as its own id with a random password issued once (only Mosquitto's `$7$` hash
is kept), and the ACL lets it publish only its own `<prefix>/bins/<its id>/telemetry`, `event`
and `status` and read only its own `cmd` topic, so a bin cannot speak for another, nor retain
messages on topics of its own making. The services get exactly what they need, and
people read the alerts of what they answer for:

| account          | may                                                                    |
|------------------|------------------------------------------------------------------------|
| `ingest`, `ingest-<n>` | read every bin's telemetry, event and status                     |
| `collector`      | write every operator's dispatch and routes topics, and the grid's escalation topics |
| `alerter`        | write `<prefix>/alerts/#`                                               |
| `simulator`      | write every bin's topics and read the dispatches and routes: it impersonates the |
| (`-crews`,       | whole fleet and the operators' crews (demos, tests); read and write its |
| `-inject`)       | faults topic (`binwatch demo --inject`)                                 |
| `operator-<id>`  | read its operator's dispatch and routes topics and the alerts of the sites it serves |
| `manager-<name>` | read the alerts of its sites (`<prefix>/alerts/<site id>`)              |
| `admin-<name>`   | read every alert (`<prefix>/alerts/#`): the city's                      |

binwatch's broker makes each client's id its user name (`use_username_as_clientid`), so no
account can take another's session; a service that needs more than one connection gets
sub-accounts (`ingest-0` … `ingest-31` for the workers of `binwatch ingest --workers`,
`simulator-crews`, and `simulator-inject` for `binwatch demo --inject`), exported with the
service's own password hash and ACL: one secret to hand out, one client id per connection.

A retired bin (devices/retirement.py) keeps its credential but is left out of both files, so
the broker refuses it once they are exported again; reinstated, it is back in the next export.

Mosquitto reads both files at start and on SIGHUP; `export` writes them atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, NotFound
from devices.contract import TopicKind, Topics, account_name_problem, is_id
from devices.models import AreaContact, Bin, Operator, Site
from devices.retirement import retired_bin_ids
from security.hashing import mosquitto_hash, new_secret
from security.models import MqttCredential

SERVICES: Final = ("ingest", "collector", "alerter", "simulator")
# `binwatch ingest --workers` allows at most this many workers, each its own account.
INGEST_WORKERS_MAX: Final = 32
SUB_ACCOUNTS: Final = {
    "ingest": tuple(f"ingest-{worker}" for worker in range(INGEST_WORKERS_MAX)),
    "simulator": ("simulator-crews", "simulator-inject"),
}
OPERATOR_PREFIX: Final = "operator-"
MANAGER_PREFIX: Final = "manager-"
ADMIN_PREFIX: Final = "admin-"
PASSWORD_FILE: Final = "passwords"
# What a bin may publish (docs/device-contract.md): these topics of its own and nothing else.
BIN_PUBLISHES: Final = (TopicKind.telemetry, TopicKind.event, TopicKind.status)
ACL_FILE: Final = "acl"


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    password: str  # shown once


# A password chosen by someone (compose's variables) must be at least this long; issued ones are
# random and longer.
CHOSEN_PASSWORD_MIN = 16


def issue(
    session: Session,
    username: str,
    *,
    now: datetime,
    site_ids: Sequence[str] = (),
    password: str | None = None,
) -> Issued:
    """A new password for `username` (a bin id, a service, `operator-<operator id>`,
    `manager-<name>` with its `site_ids`, or `admin-<name>`), replacing any earlier one: random,
    unless `password` is given (a deployment that hands its services their passwords itself)."""
    kind, bin_id = _kind(session, username, site_ids)
    if password is None:
        password = new_secret()
    elif len(password) < CHOSEN_PASSWORD_MIN or not password.isprintable():
        raise InvalidRequest(
            f"the password for {username!r} must be at least {CHOSEN_PASSWORD_MIN} printable"
            " characters (e.g. `openssl rand -hex 24`)"
        )
    credential = session.get(MqttCredential, username) or MqttCredential(username=username)
    credential.kind, credential.bin_id = kind, bin_id
    credential.site_ids = " ".join(sorted(set(site_ids)))
    credential.password_hash = mosquitto_hash(password)
    credential.created_at = now
    session.add(credential)
    session.commit()
    return Issued(username, password)


def _kind(session: Session, username: str, site_ids: Sequence[str]) -> tuple[str, str | None]:
    """The account's kind (and bin), or a clear error for a name that cannot be one."""
    person = next((p for p in (MANAGER_PREFIX, ADMIN_PREFIX) if username.startswith(p)), None)
    # The name of a person's account is free, and goes into Mosquitto's line-based files as it
    # is: a line break (or a ':' in the password file) wrote lines of its own, e.g. another
    # account's password. So it follows the id rule, like every other account's name.
    if person and len(username) > len(person) and not is_id(username.removeprefix(person)):
        raise InvalidRequest(
            f"{username[:80]!r}: after {person!r} an account's name is 1–64 letters, digits,"
            " '_', '.' or '-', starting with a letter or digit"
        )
    if session.get(Bin, username) is not None and (clash := account_name_problem(username)):
        # Registered before the fleet import refused such ids: neither a bin nor the account.
        raise InvalidRequest(f"{clash}; rename the bin in the fleet file")
    if site_ids and not username.startswith(MANAGER_PREFIX):
        raise InvalidRequest(f"only manager-<name> accounts have sites, not {username!r}")
    if username in SERVICES:
        return "service", None
    if any(username in names for names in SUB_ACCOUNTS.values()):
        raise InvalidRequest(f"{username!r} shares its service's password: issue that service")
    if username.startswith(OPERATOR_PREFIX):
        if session.get(Operator, username.removeprefix(OPERATOR_PREFIX)) is None:
            raise NotFound(f"no operator for account {username!r}")
        return "service", None
    if username.startswith(MANAGER_PREFIX):
        if not site_ids:
            raise InvalidRequest(f"{username!r} needs at least one site (--site)")
        unknown = sorted(set(site_ids) - set(session.scalars(select(Site.id))))
        if unknown:
            raise NotFound(f"no site {', '.join(unknown)}")
        return "manager", None
    if username.startswith(ADMIN_PREFIX) and len(username) > len(ADMIN_PREFIX):
        return "admin", None
    if session.get(Bin, username) is not None:
        return "bin", username
    raise NotFound(
        f"{username!r} is neither a registered bin, a service, operator-<id>, manager-<name>"
        " nor admin-<name>"
    )


def issue_missing_bins(session: Session, *, now: datetime) -> list[Issued]:
    """Credentials for every registered bin in service that has none yet (after a fleet
    import)."""
    have = set(session.scalars(select(MqttCredential.bin_id).where(MqttCredential.bin_id != None)))  # noqa: E711
    have |= retired_bin_ids(session)
    return [
        issue(session, b, now=now)
        for b in session.scalars(select(Bin.id).order_by(Bin.id))
        if b not in have
    ]


def exists(session: Session, username: str) -> bool:
    return session.get(MqttCredential, username) is not None


def revoke(session: Session, username: str) -> None:
    credential = session.get(MqttCredential, username)
    if credential is None:
        raise NotFound(f"no MQTT account {username!r}")
    session.delete(credential)
    session.commit()


def acl_text(session: Session, prefix: str) -> str:
    """The Mosquitto ACL: explicit `user` sections only (no `pattern` lines, which would apply
    to the service accounts too), and nothing at all for anonymous clients."""
    bins, alerts = f"{prefix}/bins", f"{prefix}/alerts"
    escalations = sorted(
        topic for topic in session.scalars(select(AreaContact.mqtt_topic)) if topic
    )
    sections: dict[str, list[str]] = {
        "ingest": [f"topic read {bins}/+/{kind}" for kind in ("telemetry", "event", "status")],
        "collector": [
            f"topic write {prefix}/operators/+/dispatch",
            f"topic write {prefix}/operators/+/routes",
        ]
        + [f"topic write {topic}" for topic in escalations],
        "alerter": [f"topic write {alerts}/#"],
        "simulator": [
            f"topic write {bins}/#",
            f"topic read {prefix}/operators/+/dispatch",
            f"topic read {prefix}/operators/+/routes",
            f"topic readwrite {Topics(prefix).simulator_faults()}",
        ],
    }
    for service, names in SUB_ACCOUNTS.items():
        sections.update((name, sections[service]) for name in names)
    served: dict[str, list[str]] = {}
    for site_id, operator_id in session.execute(select(Site.id, Site.operator_id)):
        served.setdefault(operator_id, []).append(site_id)
    for credential in _enabled(session):
        name = credential.username
        if credential.kind == "bin":
            # Exactly the contract's three topics, never `{bins}/{name}/#`: under a wildcard a
            # bin could retain a message on as many topics of its own as it liked (each up to
            # the broker's message size, kept in memory and in the persistence file for good),
            # and write its own `cmd`, which it also reads.
            sections[name] = [
                *(f"topic write {bins}/{name}/{kind.value}" for kind in BIN_PUBLISHES),
                f"topic read {bins}/{name}/{TopicKind.cmd.value}",
            ]
        elif credential.kind == "manager":
            sections[name] = [f"topic read {alerts}/{site}" for site in credential.site_ids.split()]
        elif credential.kind == "admin":
            sections[name] = [f"topic read {alerts}/#"]
        elif name.startswith(OPERATOR_PREFIX):
            operator = name.removeprefix(OPERATOR_PREFIX)
            sections[name] = [
                f"topic read {prefix}/operators/{operator}/dispatch",
                f"topic read {prefix}/operators/{operator}/routes",
            ] + [f"topic read {alerts}/{site}" for site in sorted(served.get(operator, ()))]
    lines = [f"# binwatch MQTT ACL for prefix {prefix}: generated, do not edit", ""]
    for name, rules in sections.items():
        lines += [f"user {name}", *rules, ""]
    return "\n".join(lines)


def password_text(session: Session) -> str:
    """One line per account; a service's sub-accounts repeat its hash (the same password)."""
    lines = []
    for row in _enabled(session):
        for name in (row.username, *SUB_ACCOUNTS.get(row.username, ())):
            lines.append(f"{name}:{row.password_hash}\n")
    return "".join(lines)


def _enabled(session: Session) -> list[MqttCredential]:
    """Every account but those of retired bins (devices/retirement.py): a retired bin keeps its
    credential, left out of both files, so reinstating it lets the same device back in."""
    retired = retired_bin_ids(session)
    rows = session.scalars(select(MqttCredential).order_by(MqttCredential.username))
    return [row for row in rows if row.bin_id not in retired]


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
