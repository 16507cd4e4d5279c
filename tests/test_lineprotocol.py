"""Line-protocol escaping, without servers (tests/test_ingest_bad_input.py round-trips the same
awkward values through a real InfluxDB)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.lineprotocol import escape_key, format_field, point, tag_set, telemetry_line
from core.telemetry import FIELDS, MEASUREMENT


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("with space", r"with\ space"),
        ("a,b", r"a\,b"),
        ("k=v", r"k\=v"),
        ("all of ,= them", r"all\ of\ \,\=\ them"),
        ("中文 社区", r"中文\ 社区"),
    ],
)
def test_keys_and_tag_values_escape_comma_equals_space(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped


@pytest.mark.parametrize("bad", ["line\nbreak", "cr\r", "", "trailing\\"])
def test_unrepresentable_tag_values_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="line protocol cannot carry"):
        escape_key(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (3, "3i"),
        (0, "0i"),
        (2.5, "2.5"),
        (100.0, "100.0"),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("two\nlines", r'"two\nlines"'),
    ],
)
def test_field_values(value: float | int | bool | str, text: str) -> None:
    assert format_field(value) == text


def test_tag_set_is_sorted_escaped_and_skips_empty_values() -> None:
    tags = tag_set({"site": "Jiazhou Shuian", "bin": "b-1", "district": "", "street": "a,b=c"})
    assert tags == r",bin=b-1,site=Jiazhou\ Shuian,street=a\,b\=c"


def test_point_leaves_out_missing_fields() -> None:
    line = point(
        "telemetry", ",bin=b1", {"fill_pct": 12.5, "seq": None, "deposits": 3}, 1795739261355
    )
    assert line == "telemetry,bin=b1 fill_pct=12.5,deposits=3i 1795739261355"


def test_point_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        point("telemetry", ",bin=b1", {"seq": None}, 1)


def test_measurement_escapes_comma_and_space() -> None:
    assert point("a b,c", "", {"f": 1}, 5) == r"a\ b\,c f=1i 5"


_level = st.floats(min_value=0, max_value=1000, allow_nan=False)
_count = st.integers(min_value=0, max_value=2**40)


@given(
    fill=st.one_of(_level, st.sampled_from([0.0, 89.999, 90.0, 99.9, 100.0])),
    seq=st.none() | _count,
    deposits=st.none() | _count,
    contaminated=st.none() | _count,
    weight=st.none() | _level,
    battery=st.none() | _level,
    temp=st.none() | st.floats(min_value=-60, max_value=1000, allow_nan=False),
    received=_count,
    ts=_count,
)
def test_telemetry_line_is_the_generic_point(
    fill: float,
    seq: int | None,
    deposits: int | None,
    contaminated: int | None,
    weight: float | None,
    battery: float | None,
    temp: float | None,
    received: int,
    ts: int,
) -> None:
    if contaminated is not None and deposits is None:
        deposits = contaminated  # the contract allows no contaminated without deposits
    tags = tag_set({"bin": "b 1", "site": "s,1"})
    fields = {
        "fill_pct": fill,
        "seq": seq,
        "deposits": deposits,
        "contaminated": contaminated,
        "checked_deposits": None if contaminated is None else deposits,
        "weight_kg": weight,
        "battery_pct": battery,
        "temp_c": temp,
        "overflow": int(fill >= 100),
        "over90": int(fill >= 90),
        "received_ms": received,
    }
    expected = point(MEASUREMENT, tags, fields, ts)
    line = telemetry_line(
        tags, fill, seq, deposits, contaminated, weight, battery, temp, received, ts
    )
    assert line == expected


def test_telemetry_line_writes_the_schemas_fields_only() -> None:
    """Every field the line writes is a field of the schema (core.telemetry), which the API, the
    rollups and the dashboards read by those names."""
    line = telemetry_line(tag_set({"bin": "b1"}), 95.0, 1, 10, 2, 3.5, 80.0, 20.0, 7, 8)
    written = {pair.split("=")[0] for pair in line.split(" ")[1].split(",")}
    assert line.startswith(f"{MEASUREMENT},")
    assert written == {*FIELDS, "checked_deposits"}
