"""The telemetry fast path: contract v1 readings parsed and bounded by compiled code (msgspec).

`devices.contract.Reading` stays the documented schema and the judge of every refusal; this
module only recognises, in one pass over the bytes, payloads the model would accept, and builds
the very `Reading` the model would have built, without pydantic's per-field Python work. Its
struct is derived from the model's own fields and bounds, so the two cannot drift apart. It
answers None for anything it does not accept, and ingest then asks the model, which gives the
reason and detail; so a payload is judged by the model's rules either way
(tests/test_wire.py checks with generated payloads that both accept exactly the same).

Why msgspec agrees with the model on what it accepts: it refuses `NaN`/`Infinity` literals
(invalid JSON) and `1e400` (out of range), as the model refuses non-finite floats; it is strict
(`"50"`, `true` and `1.0` are not counts, as in the model's strict mode); it refuses unknown
fields, a BOM, invalid UTF-8 and lone surrogates, and integers beyond 64 bits (the model never
sees those: `json.loads` refuses over 4,300 digits, and the bounds are far inside 64 bits);
for a duplicate key both keep the last value.
"""

from __future__ import annotations

from typing import Annotated, Any

import annotated_types
import msgspec
from pydantic.fields import FieldInfo

from devices.contract import Reading, parse_ts

_new = object.__new__
_set = object.__setattr__


def _wire_type(name: str, field: FieldInfo) -> Any:
    """The msgspec type of one model field: its Python type with the model's bounds."""
    if name == "ts":
        return int | str  # the model's own parse_ts judges it (RFC 3339 or epoch ms)
    optional = not field.is_required()
    base = next(
        kind for kind in (int, float) if field.annotation in (kind, kind | None)
    )  # StopIteration here means the model gained a type this fast path does not know
    ge: Any = next(m.ge for m in field.metadata if isinstance(m, annotated_types.Ge))
    le: Any = next(m.le for m in field.metadata if isinstance(m, annotated_types.Le))
    bounded: Any = Annotated[base, msgspec.Meta(ge=ge, le=le)]
    return bounded | None if optional else bounded


def _wire_fields() -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, field in Reading.model_fields.items():
        kind = _wire_type(name, field)
        fields.append((name, kind) if field.is_required() else (name, kind, None))
    return fields


# kw_only keeps the model's field order although required and optional fields alternate;
# gc=False: a struct of numbers and strings cannot be part of a cycle, so the cyclic garbage
# collector need not track it.
WireReading = msgspec.defstruct(
    "WireReading", _wire_fields(), kw_only=True, forbid_unknown_fields=True, gc=False
)
_DECODER = msgspec.json.Decoder(WireReading | list[WireReading])  # type: ignore[valid-type]
_NAMES = tuple(Reading.model_fields)


def trusted_reading(values: dict[str, Any]) -> Reading:
    """The `Reading` holding `values`, which the model's rules already accepted: what
    `Reading.model_construct` does, for this one model, without its generic per-field work.
    The fields set are those holding a value (the model would also count an explicit null;
    nothing in binwatch reads it)."""
    reading = _new(Reading)
    _set(reading, "__dict__", values)
    _set(reading, "__pydantic_fields_set__", {k for k, v in values.items() if v is not None})
    _set(reading, "__pydantic_extra__", None)
    _set(reading, "__pydantic_private__", None)
    return reading


def readings(payload: bytes | bytearray) -> tuple[list[Reading], bool] | None:
    """The readings of a telemetry payload (one object, or a non-empty array of them) and
    whether it was an array, when the contract model accepts every one of them; None when it
    may not, for the model to judge."""
    try:
        wire = _DECODER.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    array = isinstance(wire, list)
    if not array:
        wire = [wire]
    elif not wire:
        return None
    out = []
    for item in wire:
        values = msgspec.structs.asdict(item)
        contaminated = values["contaminated"]
        if contaminated is not None:
            deposits = values["deposits"]
            if deposits is None or contaminated > deposits:
                return None
        try:
            values["ts"] = parse_ts(values["ts"])
        except ValueError:
            return None
        out.append(trusted_reading(values))
    return out, array
