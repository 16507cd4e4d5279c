"""The reasons the system writes (core/reasons.py) in the reader's language: each message's
English template is its msgid in the console's catalogs, numbers and times go through the
reader's `Formats`, alert types and streams are named as everywhere on the console. A row without a
structured reason (a person's own note, a row from before) shows its stored text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from api.console import labels
from api.console.i18n import N_, Formats, translations
from core.reasons import LocaleWriter, written

Explain = Callable[[Mapping[str, Any] | None, str], str]


def explainer(fmt: Formats) -> Explain:
    """`explain(stored, text)` for templates: the stored reason as `fmt`'s reader reads it."""
    gettext = translations(fmt.locale).gettext
    writer = LocaleWriter(
        template=lambda _id, english: gettext(english),
        time=fmt.time,
        alert_type=lambda code: gettext(labels.ALERT_TYPES[code]),
        locale=fmt.locale,
        stream=lambda code: gettext(labels.STREAMS[code]),
    )
    return lambda stored, text: written(stored, text, writer)


# Who binwatch itself is in an audit trail (`role:name` of the system role,
# collection.lifecycle.Actor); people and keys are shown as the trail names them.
_AUTOMATIC = "system:"


def actor_namer(locale: str) -> Callable[[str], str]:
    """`actor(name)` for templates: who made an event or a plan, as the reader reads it."""
    automatic = translations(locale).gettext(N_("binwatch, automatically"))
    return lambda name: automatic if name.startswith(_AUTOMATIC) else name
