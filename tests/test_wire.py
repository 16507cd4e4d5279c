"""ingest.wire (the compiled telemetry fast path) against the contract model, with generated
payloads: both must accept exactly the same, and decode must give the same lines, readings and
rejections (reason, detail, payload) whether the fast path answers or the model does. No servers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devices.contract import Reading
from ingest import wire
from ingest.decode import Decoded, TimeLimits, decode
from tests.test_decode import RECEIVED, RETIRED, TAGS, TOPICS

TOPIC = "binwatch/v1/bins/b1/telemetry"
LIMITS = TimeLimits(max_past_ms=30 * 86_400_000, max_future_ms=300_000)
# Deterministic (the same cases every run, so a failure reproduces and CI cannot flake), sized
# to take a few seconds on a shared 2-core machine.
EXAMPLES = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Raw(str):
    """A JSON token written as it is: NaN, 1e400, an integer of 5,000 digits, 1E2…"""


class Pairs(list[tuple[str, Any]]):
    """A JSON object as written, so a key can occur twice."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return to_json(Pairs(value.items()))
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)  # ASCII: a lone surrogate is written as \ud800


def _bounds(name: str) -> tuple[type, float, float]:
    field = Reading.model_fields[name]
    kind = int if field.annotation in (int, int | None) else float
    ge = next(m.ge for m in field.metadata if hasattr(m, "ge"))
    le = next(m.le for m in field.metadata if hasattr(m, "le"))
    return kind, ge, le


NUMBERS = [name for name in Reading.model_fields if name != "ts"]

WRONG_TYPES = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=1),
    st.sampled_from(["50", "", "\ud800", "1e3"]),
)
NON_FINITE = st.sampled_from([Raw(t) for t in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")])
HUGE = st.sampled_from(
    [2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, Raw("1" + "0" * 5000), Raw("-" + "9" * 400)]
)


def valid_number(name: str) -> st.SearchStrategy[Any]:
    """Values the contract accepts for one numeric field, its bounds included."""
    kind, ge, le = _bounds(name)
    if kind is int:
        return st.one_of(st.integers(int(ge), int(le)), st.sampled_from([int(ge), int(le), -0]))
    return st.one_of(
        st.floats(ge, le),
        st.integers(math.ceil(ge), math.floor(le)),
        st.sampled_from([ge, le, -0.0, int(le), Raw("5E1"), Raw(f"{le:.30f}")]),
        st.floats(ge, le).map(lambda x: Raw(f"{x:.25e}")),  # more digits than a double holds
        st.floats(ge, le).map(lambda x: Raw(repr(x).upper())),
    )


def any_number(name: str) -> st.SearchStrategy[Any]:
    """Values for one numeric field that are mostly wrong: just past its bounds, of the other
    number type, not finite, huge, not numbers at all."""
    kind, ge, le = _bounds(name)
    past: st.SearchStrategy[Any]
    other: st.SearchStrategy[Any]
    if kind is int:
        past = st.sampled_from([int(ge) - 1, int(le) + 1, 1.0, 0.0, Raw("1E2"), Raw("1.0")])
        other = st.floats(allow_nan=False, allow_infinity=False)
    else:
        past = st.sampled_from(
            [
                math.nextafter(ge, -math.inf),
                math.nextafter(le, math.inf),
                int(le) + 1,
                int(ge) - 1,
                Raw(f"{le}0000000000000000001"),
                Raw("-0.0000001"),
            ]
        )
        other = st.floats(allow_nan=False, allow_infinity=False).map(lambda x: Raw(repr(x)))
    return st.one_of(past, NON_FINITE, WRONG_TYPES, other, HUGE, valid_number(name))


MS_MIN, MS_MAX = 946_684_800_000, 4_102_444_800_000
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)), None]
)


def _rfc3339(moment: datetime, zone: timezone | None, spec: str) -> str:
    """RFC 3339 in a zone, or without an offset (which the contract refuses)."""
    local = moment.astimezone(zone) if zone else moment.replace(tzinfo=None)
    return local.isoformat(timespec=spec)


VALID_TIMESTAMPS = st.one_of(
    st.integers(RECEIVED - 2 * 86_400_000, RECEIVED + 300_000),
    st.builds(
        _rfc3339,
        st.integers(RECEIVED - 2 * 86_400_000, RECEIVED + 300_000).map(
            lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC)
        ),
        ZONES.filter(lambda zone: zone is not None),
        st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    ),
)
PAST, FUTURE = RECEIVED - LIMITS.max_past_ms, RECEIVED + LIMITS.max_future_ms
TIMESTAMPS = st.one_of(
    st.sampled_from([PAST - 1, PAST, FUTURE, FUTURE + 1]),  # ingest's time limits, inclusive
    st.integers(RECEIVED - 40 * 86_400_000, RECEIVED + 86_400_000),
    VALID_TIMESTAMPS,
    st.integers(MS_MIN // 1000 - 1, MS_MAX // 1000 + 1),  # epoch seconds
    st.sampled_from([MS_MIN - 1, MS_MIN, MS_MAX, MS_MAX + 1, 0, -1, 2**64, Raw("1.7e12")]),
    st.builds(
        _rfc3339,
        st.integers(RECEIVED - 2 * 86_400_000, RECEIVED + 600_000).map(
            lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC)
        ),
        ZONES,
        st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    ),
    st.sampled_from(
        [
            "1999-12-31T23:59:59.999999+00:00",
            "2000-01-01T00:00:00Z",
            "2100-01-01T00:00:00+00:00",
            "2100-01-01T00:00:00.001+00:00",
            "2026-11-27 08:00:00",
            "noon",
            "\ud800",
            "",
        ]
    ),
    WRONG_TYPES,
    NON_FINITE,
)

VALID = {"ts": VALID_TIMESTAMPS, **{name: valid_number(name) for name in NUMBERS}}
ANY = {"ts": TIMESTAMPS, **{name: any_number(name) for name in NUMBERS}}
REQUIRED = [name for name, field in Reading.model_fields.items() if field.is_required()]


@st.composite
def readings(draw: st.DrawFn) -> Pairs:
    """A telemetry object: usually the contract's, often with one thing wrong."""
    chosen = draw(st.sets(st.sampled_from(NUMBERS)))
    names = [n for n in ANY if n in REQUIRED or n in chosen]
    if draw(st.integers(0, 9)) == 9:  # a required field missing
        names.remove(draw(st.sampled_from(REQUIRED)))
    wrong = draw(st.sampled_from(names)) if draw(st.booleans()) else None  # one field, or none
    values = {name: draw((ANY if name == wrong else VALID)[name]) for name in names}
    if "deposits" in values and "contaminated" in values and draw(st.booleans()):
        values["deposits"] = deposits = draw(st.integers(0, 1_000_000))
        values["contaminated"] = draw(st.integers(0, deposits + 1))
    pairs = Pairs(values.items())
    extra = draw(st.integers(0, 14))  # Hypothesis favours 0: the common case
    if extra == 13:  # an unknown field, perhaps a lone surrogate or an escape of a known one
        key = draw(st.one_of(st.text(max_size=6), st.sampled_from(["\ud800", "Fill_pct", "seq "])))
        pairs.append((key, draw(st.integers(0, 5))))
    elif extra == 14 and pairs:  # a key twice: JSON parsers keep the last
        key, _ = draw(st.sampled_from(list(pairs)))
        pairs.append((key, draw(ANY.get(key, st.integers(0, 5)))))
    if draw(st.integers(0, 3)) == 3:
        pairs = Pairs(draw(st.permutations(list(pairs))))
    return pairs


def _nest(document: Any, depth: int) -> Any:
    for level in range(depth):
        document = [document] if level % 2 else {"fill_pct": document}
    return document


DOCUMENTS = st.one_of(
    readings(),
    readings(),
    readings(),
    st.lists(readings(), min_size=1, max_size=4),
    st.just([]),
    st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans()),
    st.lists(st.one_of(readings(), st.integers(), st.lists(readings(), max_size=1)), max_size=3),
    st.builds(_nest, readings(), st.sampled_from([1, 2, 15, 16, 17, 64])),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    body = to_json(draw(DOCUMENTS)).encode()
    mangle = draw(st.integers(0, 19))  # 0, which Hypothesis favours, leaves it whole
    if mangle == 16:
        body = body[: draw(st.integers(0, len(body)))]
    elif mangle == 17:
        body = b"\xef\xbb\xbf" + body
    elif mangle == 18:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + body[at:]
    elif mangle == 19:
        body = draw(st.sampled_from([b" ", b"\n\t\r", b"\x0c", "\u00a0".encode()])) + body + b" "
    return body


def run(payload: bytes, *, limits: TimeLimits | None) -> Decoded:
    return decode(
        TOPIC,
        payload,
        RECEIVED,
        topics=TOPICS,
        tags_of=TAGS.get,
        max_payload=1 << 20,
        limits=limits,
        retired=RETIRED,
    )


@contextmanager
def model_only() -> Iterator[None]:
    """decode as it was before the fast path: every payload judged by the pydantic model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wire, "readings", lambda payload: None)
        yield


def outcome(decoded: Decoded) -> tuple[Any, ...]:
    return (
        decoded.lines,
        [(r.reason, r.detail, r.payload) for r in decoded.rejections],
        [(bin_id, r, r.model_dump_json()) for bin_id, r in decoded.readings],
        decoded.buffered,
        decoded.events,
        decoded.statuses,
    )


# Each reason a reading can get, and the edges where the two parsers could differ, tried on
# every run whatever the generator draws.
EXAMPLE_PAYLOADS = [
    *(f'{{"ts": {ts}, "fill_pct": 5}}' for ts in (RECEIVED, PAST, PAST - 1, FUTURE + 1)),
    '{"ts": 1, "fill_pct": 5}', '{"ts": 1795739261, "fill_pct": 5}', '{"fill_pct": 5}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "colour": 1}}', f'{{"ts": {RECEIVED}, "fill_pct": "5"}}',
    f'{{"ts": {RECEIVED}, "fill_pct": NaN}}', f'{{"ts": {RECEIVED}, "fill_pct": 1e400}}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "deposits": 1, "contaminated": 2}}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "seq": 1{"0" * 5000}}}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "seq": 1.0}}', f'{{"ts": {RECEIVED}, "fill_pct": true}}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "\\ud800": 1}}', '{"ts": "\\ud800", "fill_pct": 5}',
    f'{{"ts": {RECEIVED}, "fill_pct": "x", "fill_pct": 5}}',
    f'{{"ts": {RECEIVED}, "fill_pct": 5, "fill_pct": 500}}',
    f'[{{"ts": {RECEIVED}, "fill_pct": 5}}, {{"ts": {RECEIVED}, "fill_pct": 500}}]',
    f'[{{"ts": {RECEIVED}, "fill_pct": 5}}]', "[]", "42", "[" * 64 + "]" * 64,
    f'\ufeff{{"ts": {RECEIVED}, "fill_pct": 5}}', f' {{"ts": {RECEIVED}, "fill_pct": 5}}\n',
]  # fmt: skip


def with_examples(test: Any) -> Any:
    for payload in [*EXAMPLE_PAYLOADS, b"\xff{}"]:
        test = example(payload=payload.encode() if isinstance(payload, str) else payload)(test)
    return test


@EXAMPLES
@with_examples
@given(payload=payloads())
def test_the_fast_path_accepts_exactly_what_the_model_accepts(payload: bytes) -> None:
    with model_only():
        model = run(payload, limits=None)
    accepted = bool(model.lines) and not model.rejections
    fast = wire.readings(payload) is not None
    # One case apart, which decode hands to the model: a key given twice, whose earlier value
    # msgspec judges (and refuses) while json.loads keeps only the last.
    assert fast == accepted or (accepted and has_duplicate_keys(payload))


def has_duplicate_keys(payload: bytes) -> bool:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in items}) < len(items):
            raise KeyError("duplicate")
        return dict(items)

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except KeyError:
        return True
    return False


@EXAMPLES
@with_examples
@given(payload=payloads())
def test_decode_gives_the_same_lines_readings_and_reasons_either_way(payload: bytes) -> None:
    with model_only():
        expected = outcome(run(payload, limits=LIMITS))
    assert outcome(run(payload, limits=LIMITS)) == expected


def test_the_generated_payloads_are_of_every_kind() -> None:
    """Guards the tests above against a generator that makes only one kind of payload (the
    examples cover each reason; the generator must reach beyond them)."""
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(payload=payloads())
    def collect(payload: bytes) -> None:
        with model_only():
            decoded = run(payload, limits=LIMITS)
        seen.update(r.reason for r in decoded.rejections)
        if decoded.lines:
            seen.add("accepted")

    collect()
    assert "accepted" in seen and len(seen) >= 9, seen


def test_a_fast_reading_is_the_models_reading() -> None:
    document = {"ts": RECEIVED, "seq": 3, "fill_pct": 50, "deposits": 4, "contaminated": 1}
    parsed = wire.readings(json.dumps(document).encode())
    assert parsed is not None
    (fast,), buffered = parsed
    model = Reading.model_validate(document)
    assert type(fast) is Reading and not buffered
    assert fast == model and hash(fast) == hash(model)
    assert fast.model_dump_json() == model.model_dump_json()
    assert fast.model_fields_set == model.model_fields_set
    assert isinstance(fast.fill_pct, float) and fast.ts.tzinfo is UTC
    with pytest.raises(ValueError, match="frozen"):
        fast.fill_pct = 3  # type: ignore[misc]
