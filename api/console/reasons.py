"""The reasons the system writes (core/reasons.py) in the reader's language: each message's
English template is its msgid in the console's catalogs, numbers and times go through the
reader's `Formats`, alert types and streams are named as everywhere on the console. A row without a
structured reason (a person's own note, a row from before) shows its stored text."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from alerts.store import ALERTER
from api.console import labels
from api.console.i18n import N_, Formats, translations
from core.reasons import LocaleWriter, written
from security.keys import BOOTSTRAP_KEY_ID
from security.users import COMMAND_LINE

Explain = Callable[[Mapping[str, Any] | None, str], str]


def explainer(fmt: Formats, area: Callable[[str], str] = str) -> Explain:
    """`explain(stored, text)` for templates: the stored reason as `fmt`'s reader reads it,
    each area of the grid by `area` (its name; the reasons keep its id)."""
    gettext = translations(fmt.locale).gettext
    writer = LocaleWriter(
        template=lambda _id, english: gettext(english),
        time=fmt.time,
        alert_type=lambda code: gettext(labels.ALERT_TYPES[code]),
        locale=fmt.locale,
        stream=lambda code: gettext(labels.STREAMS[code]),
        area=area,
    )
    return lambda stored, text: written(stored, text, writer)


# Who binwatch itself is in an audit trail (`role:name` of the system role,
# collection.lifecycle.Actor; the alerter, alerts.store.ALERTER); a person or a key as `Principal.actor` writes them
# (`<role> <user|key> <id> (<name>)`); `binwatch users` on the server as security.users writes it.
_AUTOMATIC = "system:"
_PRINCIPAL = re.compile(r"(?P<role>\w+) (?P<kind>user|key) (?P<id>\S+) \((?P<name>.*)\)", re.S)


def actor_namer(locale: str) -> Callable[[str], str]:
    """`actor(name)` for templates: who made an event or a plan, as the reader reads it: a
    person by their name and role in the reader's language, a key by its name and role, the
    server's own admin key and the command line in words, never the trail's codes."""
    gettext = translations(locale).gettext

    def name(actor: str) -> str:
        if actor.startswith(_AUTOMATIC) or actor == ALERTER:
            return gettext(N_("binwatch, automatically"))
        if actor == COMMAND_LINE:
            return gettext(N_("a server administrator, on the command line"))
        found = _PRINCIPAL.fullmatch(actor)
        if found is None or found["role"] not in labels.USER_ROLES:
            return actor
        role = gettext(labels.USER_ROLES[found["role"]])
        if found["kind"] == "user":
            who = found["name"] or found["id"]
            return gettext(N_("%(name)s (%(role)s)")) % {"name": who, "role": role}
        if found["id"] == BOOTSTRAP_KEY_ID:
            return gettext(N_("the admin key in the server's settings"))
        key = found["name"] or found["id"]
        return gettext(N_("the API key “%(key)s” (%(role)s)")) % {"key": key, "role": role}

    return name
