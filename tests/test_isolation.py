"""The pure parts of isolation, without servers: which faults are retried, how a failing hook or
a refused write is narrowed to the data at fault and at what cost, how dead letters merge, the
history check, the contract's bounds and hostile JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from binwatch.database import migrate
from core.errors import SinkRejected, SinkUnavailable
from core.sql import make_engine
from devices.contract import Reading, Topics
from devices.models import DeadLetter
from devices.registry import add_dead_letters, dead_letter_counts, prune_dead_letters
from ingest.decode import MAX_JSON_DEPTH, Rejection, decode
from ingest.history import History, Key, Values, values_of
from ingest.isolation import find_refused, is_transient, isolate, refused_count
from ingest.letters import letters_for

TS = 1_795_739_261_355


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (SinkUnavailable("connection refused"), True),
        (SinkRejected("engine: error syncing wal", status=500), True),
        (SinkRejected("database not found", status=404), True),
        (SinkRejected("authorization failed", status=401), True),
        (SinkRejected("partial write: field type conflict", status=400), False),
        (sa_exc.OperationalError("INSERT", {}, Exception("database is locked")), True),
        (sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), False),
        (ValueError("x"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (KeyError("bug"), False),
    ],
)
def test_only_environment_faults_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


class Hook:
    """A hook that fails on the readings of bad bins, or on all of them while `down`."""

    def __init__(self, bad: set[str], *, down: bool = False) -> None:
        self.bad, self.down, self.calls, self.done = bad, down, 0, list[str]()

    def __call__(self, items: list[tuple[str, int]]) -> None:
        self.calls += 1
        if self.down:
            raise SinkUnavailable("database unreachable")
        if any(bin_id in self.bad and n % 2 for bin_id, n in items):
            raise OverflowError("too large")
        self.done += [f"{b}:{n}" for b, n in items]


def _bin(item: tuple[str, int]) -> str:
    return item[0]


def test_a_failing_hook_costs_only_the_readings_it_cannot_take() -> None:
    items = [(f"bin-{b}", n) for n in range(4) for b in range(10)]
    hook = Hook({"bin-3"})
    failed = isolate(items, hook, group_of=_bin)
    assert [(item, type(error)) for item, error in failed] == [
        (("bin-3", 1), OverflowError),
        (("bin-3", 3), OverflowError),
    ]
    assert sorted(hook.done) == sorted(
        f"{b}:{n}" for b, n in items if (b, n) not in {("bin-3", 1), ("bin-3", 3)}
    )
    # the whole, then each of the 10 bins, then each of bin-3's 4 readings
    assert hook.calls == 1 + 10 + 4


def test_an_environment_fault_in_a_hook_is_raised_for_the_caller_to_retry() -> None:
    with pytest.raises(SinkUnavailable):
        isolate([("bin-1", 1)], Hook(set(), down=True), group_of=_bin)


def test_a_hook_that_succeeds_is_called_once() -> None:
    hook = Hook(set())
    assert isolate([("a", 1), ("b", 1)], hook, group_of=_bin) == []
    assert hook.calls == 1


class Influx:
    """Refuses lines that contain 'bad' like InfluxDB 1.x does: a partial write, with how many
    it dropped; counts the writes."""

    def __init__(self, *, says_dropped: bool = True) -> None:
        self.writes, self.stored, self.says_dropped = 0, set[str](), says_dropped

    def __call__(self, lines: list[str]) -> None:
        self.writes += 1
        bad = [line for line in lines if "bad" in line]
        self.stored.update(line for line in lines if "bad" not in line)
        if bad:
            dropped = f" dropped={len(bad)}" if self.says_dropped else ""
            raise SinkRejected(f"partial write: field type conflict{dropped}", status=400)


def test_refused_points_are_found_bin_by_bin_in_few_writes() -> None:
    segments = [[f"bin{b} ok {n}" for n in range(200)] for b in range(40)]
    segments[17] = [f"bin17 bad {n}" for n in range(4700)]
    influx = Influx()
    refused = find_refused(segments, influx, max_writes=32)
    assert [(len(items), message.endswith("dropped=4700")) for items, message in refused] == [
        (4700, True)
    ]
    assert influx.writes <= 2 * 6 + 1  # halving over 40 bins, and the bin refused whole
    assert len(influx.stored) == 39 * 200


def test_the_search_stops_at_its_budget_and_says_what_it_could_not_tell_apart() -> None:
    mixed = [f"bin0 {'bad' if n % 2 else 'ok'} {n}" for n in range(4000)]
    influx = Influx(says_dropped=False)
    refused = find_refused([mixed], influx, max_writes=32)
    assert influx.writes == 32
    refused_lines = [line for items, _ in refused for line in items]
    assert {line for line in mixed if "bad" in line} <= set(refused_lines)
    assert any("not told apart" in message for _, message in refused)
    assert len(refused) < 40  # dead letters stay few


def test_a_single_refused_line_is_found_exactly() -> None:
    lines = [[f"bin{b} ok"] for b in range(100)] + [["bin100 bad"]]
    refused = find_refused(lines, Influx(says_dropped=False), max_writes=32)
    assert [items for items, _ in refused] == [["bin100 bad"]]


def test_refusal_counts_are_read_from_influxdbs_messages() -> None:
    assert refused_count("partial write: field type conflict: … dropped=3") == 3
    two_unparsed = "partial write: unable to parse 'a': x\nunable to parse 'b': y dropped=0"
    assert refused_count(two_unparsed) == 2
    assert refused_count("something else") is None


def test_a_messages_rejections_merge_into_one_letter_per_reason() -> None:
    rejections = [
        Rejection(
            "out_of_range",
            f"[{n}] fill_pct: too big",
            json.dumps({"n": n, "pad": "x" * 20}).encode(),
        )
        for n in range(4700)
    ]
    rejections.append(Rejection("wrong_type", "[4700] seq: \ud800", b"{}"))
    letters = letters_for("t/bins/b1/telemetry", "b1", TS / 1000, rejections)
    assert [(letter.reason, letter.parts) for letter in letters] == [
        ("out_of_range", 4700),
        ("wrong_type", 1),
    ]
    merged = letters[0]
    assert (
        merged.detail.startswith("4700 readings: [0] fill_pct") and "and 4695 more" in merged.detail
    )
    assert merged.payload_size > len(merged.payload)  # cut at 64 KiB, size kept
    assert "\\ud800" in letters[1].detail  # a lone surrogate cannot break storing the detail
    assert letters[1].detail.encode()


def test_small_merged_letters_replay_as_one_telemetry_array() -> None:
    rejections = [Rejection("hook_failed", f"r{n}", json.dumps({"n": n}).encode()) for n in (1, 2)]
    (letter,) = letters_for("t", "b1", TS / 1000, rejections)
    assert json.loads(letter.payload) == [{"n": 1}, {"n": 2}]


def _reading(offset_ms: int = 0, **fields: object) -> Reading:
    return Reading.model_validate({"ts": TS + offset_ms, "fill_pct": 40.0, **fields})


class Stored:
    """The history check's view of InfluxDB, in memory, recording what it was asked."""

    def __init__(self, points: dict[Key, Values]) -> None:
        self.points, self.asked = points, list[list[Key]]()
        self.asked_newest = list[list[str]]()

    def newest(self, bins: list[str]) -> dict[str, int]:
        self.asked_newest.append(bins)
        return {
            b: max(ts for (p, ts) in self.points if p == b) for b, _ in self.points if b in bins
        }

    def values(self, keys: list[Key]) -> dict[Key, Values]:
        self.asked.append(keys)
        return {key: self.points[key] for key in keys if key in self.points}


def test_history_refuses_other_values_and_lets_identical_ones_pass() -> None:
    stored = Stored({("b1", TS): values_of(_reading())})
    history = History(stored)
    batch = [
        ("b1", _reading()),  # a redelivery: harmless
        ("b1", _reading(fill_pct=10.0)),  # the same time with other values
        ("b2", _reading(5)),
        ("b2", _reading(5, seq=9)),  # two values for one time in one batch: the first wins
    ]
    found = history.conflicts(batch)
    assert sorted(found) == [1, 3]
    assert "fill_pct 40.0 → 10.0" in found[1]
    assert "seq None → 9" in found[3]
    # b1 has history up to TS: its readings there are looked up; b2 has none, nothing to ask
    assert stored.asked_newest == [["b1", "b2"]]
    assert stored.asked == [[("b1", TS)]]


def test_live_readings_newer_than_the_last_stored_are_not_looked_up() -> None:
    stored = Stored({})
    history = History(stored)
    history.stored([("b1", _reading(0)), ("b1", _reading(60_000))])
    assert history.conflicts([("b1", _reading(120_000)), ("b1", _reading(180_000))]) == {}
    assert stored.asked == [] and stored.asked_newest == []
    history.conflicts([("b1", _reading(60_000))])  # a redelivery of the newest: looked up
    assert stored.asked == [[("b1", TS + 60_000)]]


HOSTILE_NUMBERS = [
    *({"seq": big} for big in (2**53, 2**63, 2**64, 10**30)),
    *({"deposits": big} for big in (1_000_001, 2**63, 2**64)),
    {"deposits": 10, "contaminated": 2**64},
    *(
        {name: value}
        for name in ("fill_pct", "weight_kg", "battery_pct", "temp_c")
        for value in ("1e400", "-1e400", "NaN", "Infinity")
    ),
    {"weight_kg": 10_001.0},
]


def _decode(payload: bytes, kind: str = "telemetry") -> tuple[list[str], list[str]]:
    decoded = decode(
        f"binwatch/v1/bins/b1/{kind}",
        payload,
        TS,
        topics=Topics("binwatch/v1"),
        tags_of={"b1": ",bin=b1"}.get,
        max_payload=1_000_000,
    )
    return decoded.lines, [rejection.reason for rejection in decoded.rejections]


@pytest.mark.parametrize("fields", HOSTILE_NUMBERS, ids=str)
def test_numbers_no_store_can_hold_are_out_of_range(fields: dict[str, object]) -> None:
    body = ", ".join(f'"{k}": {v}' for k, v in {"ts": TS, "fill_pct": 5, **fields}.items())
    lines, reasons = _decode(f"{{{body}}}".encode())
    assert (lines, reasons) == ([], ["out_of_range"])
    # decode says what the contract model says
    with pytest.raises(ValueError):
        Reading.model_validate(json.loads(f"{{{body}}}"))


def test_the_largest_numbers_the_contract_allows_are_stored_as_such() -> None:
    reading = {"ts": TS, "fill_pct": 100, "seq": 2**53 - 1, "deposits": 10**6}
    (line,), _ = _decode(json.dumps({**reading, "contaminated": 10**6}).encode())
    assert f"seq={2**53 - 1}i,deposits=1000000i,contaminated=1000000i" in line


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b"[" * 5000 + b"]" * 5000,
        b'{"ts": 1, "fill_pct": ' + b"[" * 900 + b"]" * 900 + b"}",
        b'[{"ts": 1, "fill_pct": 5, "x": ' + b'{"a": ' * 990 + b"1" + b"}" * 990 + b"}]",
        b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
    ],
    ids=["unclosed", "closed", "in a field", "in an array element", "just too deep"],
)
def test_deeply_nested_json_is_malformed(payload: bytes) -> None:
    for kind in ("telemetry", "event", "status"):
        assert _decode(payload, kind) == ([], ["malformed_json"])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"ts": "２０２６-11-27T08:00:00+08:00", "fill_pct": 5}, "bad_timestamp"),
        ({"ts": "2026-11-27T08:00:00+08:00🔥", "fill_pct": 5}, "bad_timestamp"),
        ({"ts": "\ud800", "fill_pct": 5}, "bad_timestamp"),
        ({"ts": TS, "fill_pct": "五十"}, "wrong_type"),
        ({"ts": TS, "fill_pct": 5, "满": 1}, "unknown_field"),
        ({"ts": TS, "fill_pct": 5, "\ud800": 1}, "wrong_type"),
    ],
)
def test_unicode_in_telemetry_is_refused_with_its_reason(
    payload: dict[str, object], reason: str
) -> None:
    for body in (json.dumps(payload), json.dumps(payload, ensure_ascii=False)):
        try:
            raw = body.encode()
        except UnicodeEncodeError:
            continue  # a lone surrogate exists only as a JSON escape
        assert _decode(raw) == ([], [reason])
        assert _decode(b"[" + raw + b"]") == ([], [reason])


def test_unicode_in_an_event_detail_is_stored_or_refused_but_never_breaks_a_line() -> None:
    detail = '火灾 🔥 "quoted" \\ back\nslash\r end'
    (line,), _ = _decode(json.dumps({"ts": TS, "type": "fire", "detail": detail}).encode(), "event")
    assert line.count("\n") == 0 and "火灾 🔥" in line
    # A NUL no PostgreSQL text holds (the detail becomes its alert's): refused.
    nul = json.dumps({"ts": TS, "type": "fire", "detail": "smoke \u0000"}).encode()
    assert _decode(nul, "event") == ([], ["wrong_type"])
    surrogate = json.dumps({"ts": TS, "type": "fire", "detail": "\ud800"}).encode()
    assert _decode(surrogate, "event") == ([], ["wrong_type"])
    assert _decode(json.dumps({"ts": TS, "type": "火"}).encode(), "event") == ([], ["wrong_type"])


def _letters(bin_id: str, count: int, at: datetime) -> list[DeadLetter]:
    return [
        DeadLetter(
            received_at=at + timedelta(seconds=n),
            topic=f"t/bins/{bin_id}/telemetry",
            bin_id=bin_id,
            reason="out_of_range",
            detail="x",
            payload=b"{}",
            payload_size=2,
            parts=3,
        )
        for n in range(count)
    ]


def test_pruning_keeps_the_cap_per_bin_and_the_retention_and_keeps_the_counts(
    registry_url: str,
) -> None:
    url = registry_url
    migrate(url)
    engine = make_engine(url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with Session(engine) as session:
        add_dead_letters(session, _letters("noisy", 50, now - timedelta(hours=1)))
        add_dead_letters(session, _letters("quiet", 5, now - timedelta(hours=1)))
        add_dead_letters(session, _letters("old", 4, now - timedelta(days=40)))
        dropped = prune_dead_letters(
            session, before=now - timedelta(days=30), per_bin=10, bins=["noisy", "quiet"]
        )
        assert dropped == 40 + 4
        kept = {
            b: session.query(DeadLetter).filter_by(bin_id=b).count()
            for b in ("noisy", "quiet", "old")
        }
        assert kept == {"noisy": 10, "quiet": 5, "old": 0}
        newest = session.query(DeadLetter).filter_by(bin_id="noisy").order_by(DeadLetter.id)
        oldest_kept = newest.first().received_at  # type: ignore[union-attr]
        if oldest_kept.tzinfo is None:  # SQLite keeps no offset; PostgreSQL answers in its zone
            oldest_kept = oldest_kept.replace(tzinfo=UTC)
        assert oldest_kept == now - timedelta(seconds=3600 - 40)
        (count,) = dead_letter_counts(session).values()
        assert (count.kept, count.pruned) == (15 * 3, 44 * 3)
        # pruning again drops nothing and counts nothing twice
        assert (
            prune_dead_letters(session, before=now - timedelta(days=30), per_bin=10, bins=["noisy"])
            == 0
        )
        (count,) = dead_letter_counts(session).values()
        assert (count.kept, count.pruned) == (15 * 3, 44 * 3)
    engine.dispose()
