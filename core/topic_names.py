"""What a topic name binwatch publishes to, or writes into the broker's ACL, may hold: the rule
for the topics that come from configuration (the topic prefix, an area contact's topic).

MQTT forbids NUL in a topic and makes `+` and `#` wildcards; Mosquitto also refuses the control
characters U+0001–U+001F and U+007F–U+009F as malformed UTF-8, and answers a PUBLISH holding one
by dropping the connection ("Malformed packet"). The connection is the collector's, and paho
sends its unacknowledged QoS 1 message again after every reconnect: one such topic cut every
dispatch off, again and again. A topic starting with `$` is the broker's own (`$SYS`), and
whitespace splits a line of the ACL file that export writes."""

from __future__ import annotations

import re

from core.printable import CONTROLS

_REFUSED = re.compile(rf"[#+\s{CONTROLS}]")


def topic_problem(topic: str) -> str | None:
    """Why binwatch cannot publish to `topic`, or None."""
    if not topic:
        return "a topic cannot be empty"
    if found := _REFUSED.search(topic):
        return f"a topic holds no MQTT wildcard (+, #), space or control character ({found[0]!r})"
    if topic.startswith("$"):
        return "a topic starting with '$' is the broker's own"
    return None
