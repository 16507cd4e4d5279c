"""Hostile messages for the benchmark's "5 % hostile" flood, each with the dead letter it must give.

Issue 12's promise is that whatever one message holds costs at most that message. The figure
built from these measures what that costs the valid readings around them: every `EVERY`-th
message of the flood is hostile, drawn in turn from the fixed `KINDS` below, on the same
publisher connection as the valid readings of the same fleet (so ordering is the broker's).
Each kind names the dead-letter reason ingest must file it under and how many readings the one
letter stands for, so the bench can check that every hostile message is accounted for.

No kind is refused by InfluxDB itself: with the contract's bounds (docs/ingest.md) and
`max_past_s` (30 days) inside the raw retention (90 days), a message alone can no longer make
InfluxDB refuse a point; an array of readings the contract refuses takes that place.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from bench._payloads import PayloadSpec

# One message in EVERY is hostile: 5 %.
EVERY = 20
# Readings in the hostile array (one letter, this many parts).
ARRAY_READINGS = 50
# JSON nesting of the deep kind (the contract needs 2, ingest refuses beyond 16).
NESTING = 64
# Unknown bins are spread over this many ids, far below the dead-letter cap per bin.
UNKNOWN_BINS = 50


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile message: published after `after` valid ones, on `{prefix}/{topic}`."""

    after: int
    topic: str
    payload: bytes
    kind: str
    reason: str
    parts: int


@dataclass(frozen=True, slots=True)
class Flood:
    """The valid messages of the flood and the fleet's size, for the makers below."""

    valid: list[tuple[str, bytes]]
    bins: int

    def reading(self, index: int) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.valid[index][1])
        return document


# A hostile payload from the valid message it is based on (its JSON object, its index), the
# flood and the hostile message's number: (payload, topic or None for the base's topic).
Maker = Callable[[dict[str, Any], int, Flood, int], tuple[bytes, str | None]]


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _fill_150(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    return _dump({**doc, "fill_pct": 150}), None


def _seq_2_64(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    return _dump({**doc, "seq": 2**64}), None


def _weight_1e400(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    rest = {k: v for k, v in doc.items() if k != "weight_kg"}
    return _dump(rest)[:-1] + b',"weight_kg":1e400}', None


def _truncated(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    text = _dump(doc)
    return text[: len(text) // 2], None


def _nested(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    return b'{"ts":%d,"fill_pct":' % doc["ts"] + b"[" * NESTING + b"]" * NESTING + b"}", None


def _array_refused(doc: dict[str, Any], _i: int, _f: Flood, _h: int) -> tuple[bytes, str | None]:
    step = 1000  # distinct times, all refused before any store is asked
    return _dump(
        [{**doc, "ts": doc["ts"] - k * step, "deposits": 2**64} for k in range(ARRAY_READINGS)]
    ), None


def _rewrite(doc: dict[str, Any], index: int, flood: Flood, _h: int) -> tuple[bytes, str | None]:
    # The same bin (so the same topic) two rounds earlier when there is one (stored by then: the
    # history look-up), else the message just before (likely in the same batch: "first wins").
    earlier = index - 2 * flood.bins
    original = flood.reading(earlier) if earlier >= 0 else doc
    fill = original["fill_pct"]
    return _dump({**original, "fill_pct": round(fill + (0.5 if fill < 99 else -0.5), 1)}), None


def _unknown_bin(doc: dict[str, Any], _i: int, _f: Flood, h: int) -> tuple[bytes, str | None]:
    return _dump(doc), f"bins/bench-unknown-{h % UNKNOWN_BINS}/telemetry"


# (kind, dead-letter reason, readings per letter, maker), drawn in this order.
KINDS: tuple[tuple[str, str, int, Maker], ...] = (
    ("fill_pct 150", "out_of_range", 1, _fill_150),
    ("seq 2^64", "out_of_range", 1, _seq_2_64),
    ("weight_kg 1e400", "out_of_range", 1, _weight_1e400),
    ("truncated JSON", "malformed_json", 1, _truncated),
    (f"JSON nested {NESTING} deep", "malformed_json", 1, _nested),
    (
        f"array of {ARRAY_READINGS} with deposits 2^64",
        "out_of_range",
        ARRAY_READINGS,
        _array_refused,
    ),
    ("rewrite of a stored (bin, ts)", "rewrites_history", 1, _rewrite),
    ("unknown bin", "unknown_bin", 1, _unknown_bin),
)


def mix(spec: PayloadSpec, messages: int) -> tuple[int, list[Hostile]]:
    """(valid readings, hostile messages) of a flood of `messages`: message k is hostile when
    `k % EVERY == EVERY - 1`, based on the valid message published just before it."""
    hostile_count = messages // EVERY
    valid = messages - hostile_count
    flood = Flood(list(islice(spec.messages(), valid)), len(spec.bins))
    found: list[Hostile] = []
    for h in range(hostile_count):
        after = (EVERY - 1) * (h + 1)
        kind, reason, parts, maker = KINDS[h % len(KINDS)]
        topic, payload = flood.valid[after - 1]
        payload, other_topic = maker(flood.reading(after - 1), after - 1, flood, h)
        relative = other_topic or topic.removeprefix(f"{spec.prefix}/")
        found.append(Hostile(after, relative, payload, kind, reason, parts))
    return valid, found


def expected(hostile: Iterable[Hostile]) -> dict[str, list[int]]:
    """reason -> [letters, readings] ingest must file."""
    counts: dict[str, list[int]] = {}
    for message in hostile:
        entry = counts.setdefault(message.reason, [0, 0])
        entry[0] += 1
        entry[1] += message.parts
    return counts


def to_json(hostile: list[Hostile]) -> list[list[Any]]:
    """What the publisher needs: [after, topic relative to the prefix, payload in base64]."""
    return [[m.after, m.topic, base64.b64encode(m.payload).decode()] for m in hostile]


def interleave(
    valid: Iterable[tuple[str, bytes]], hostile: list[list[Any]], prefix: str
) -> Iterator[tuple[str, bytes]]:
    """The valid messages with each hostile one (as `to_json` wrote it) after its `after`-th."""
    pending = sorted(hostile, key=lambda m: int(m[0]))
    position = 0
    valid_iter = iter(valid)
    for after, topic, payload in pending:
        yield from islice(valid_iter, int(after) - position)
        position = int(after)
        yield f"{prefix}/{topic}", base64.b64decode(payload)
    yield from valid_iter
