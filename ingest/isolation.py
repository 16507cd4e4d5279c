"""Which faults ingest retries, and how a fault the data caused is confined to that data.

A fault of the environment (InfluxDB unreachable, a timeout, a 5xx, the registry database locked
or unreachable) would strike any batch alike: retrying is right, and meanwhile the broker holds
the rest. Every other exception met while storing a batch (InfluxDB refusing a point, a hook or
the registry unable to take a value) is taken to be caused by the data in hand: retrying it
would loop forever and block every bin, so the batch is split until the data at fault is found,
and only that is dead-lettered. A bug that fails every item therefore dead-letters them (they
can be replayed once it is fixed) instead of stopping ingest. docs/ingest.md has the table.

Pure: the callers pass the write or the hook; nothing here talks to a server."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from core.errors import SinkRejected, SinkUnavailable
from core.sql import is_transient_failure

T = TypeVar("T")

# InfluxDB's answer to a write: a status that is the server's or the account's trouble, not the
# data's (a 404 means the database was dropped; ingest recreates it and retries).
_TRANSIENT_STATUSES = frozenset({401, 403, 404, 408, 429})
# InfluxDB 1.x names how many points of a partial write it dropped, and quotes each line it
# could not parse (FACTS.md): together, how many points of a write were refused.
_DROPPED = re.compile(r"dropped=(\d+)")
_UNPARSED = "unable to parse '"


def is_transient(error: BaseException) -> bool:
    """Whether `error` is the environment's (retry) rather than the data's (isolate)."""
    if isinstance(error, SinkUnavailable):
        return True
    if isinstance(error, SinkRejected):
        return error.status in _TRANSIENT_STATUSES or error.status >= 500
    if isinstance(error, SQLAlchemyError):
        # The registry's own classification (core/sql.py), the API's too: locked, unreachable,
        # timed out, not migrated yet are retried; IntegrityError, DataError and the like are
        # the data's, confined and dead-lettered.
        return is_transient_failure(error)
    return isinstance(error, ConnectionError | TimeoutError)


def describe(error: BaseException) -> str:
    """An exception as a dead letter's detail: its type and message, one line."""
    if isinstance(error, SinkRejected):
        return error.message
    return f"{type(error).__name__}: {error}".replace("\n", " ")[:1000]


def isolate(
    items: Sequence[T], run: Callable[[list[T]], object], *, group_of: Callable[[T], Hashable]
) -> list[tuple[T, BaseException]]:
    """Run `run` on all items; if that fails for the data's sake, on each group of them (a bin's,
    in order), and on each item of a group that fails. Returns the items that failed alone, with
    their error. An environment fault is raised at once, for the caller to retry the whole: `run`
    must be idempotent. At most 1 + groups + items of failing groups calls."""
    if not items:
        return []
    error = _fails(run, list(items))
    if error is None:
        return []
    if len(items) == 1:
        return [(items[0], error)]
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    failed: list[tuple[T, BaseException]] = []
    for group in groups.values():
        if len(groups) > 1:
            error = _fails(run, group)
            if error is None:
                continue
            if len(group) == 1:
                failed.append((group[0], error))
                continue
        for item in group:
            error = _fails(run, [item])
            if error is not None:
                failed.append((item, error))
    return failed


def _fails(run: Callable[[list[T]], object], items: list[T]) -> BaseException | None:
    try:
        run(items)
    except Exception as error:
        if is_transient(error):
            raise
        return error
    return None


def refused_count(message: str) -> int | None:
    """How many points InfluxDB's error says it refused; None when it does not say."""
    dropped = _DROPPED.search(message)
    unparsed = message.count(_UNPARSED)
    if dropped is None and not unparsed:
        return None
    return (int(dropped.group(1)) if dropped else 0) + unparsed


def find_refused(
    segments: Sequence[Sequence[T]],
    write: Callable[[list[T]], None],
    *,
    max_writes: int,
) -> list[tuple[list[T], str]]:
    """The items InfluxDB refuses, with its reason, in at most `max_writes` writes.

    `segments` are the items of one bin each: a bin can only publish its own topics, so the
    search splits between bins first, which confines it, and its cost, to the bins whose points
    are refused. InfluxDB says how many points of a write it refused (`refused_count`): a part
    refused whole is not split, a segment exactly that large is tried first (a bin whose whole
    array is refused is found in two writes), and a half whose refusals its sibling already
    accounts for is known clean without a write. Parts not told apart when the writes are spent
    are returned whole, their reason saying so: InfluxDB stored the points of them it accepts (a
    refused write is a partial write), so replaying them rewrites those harmlessly."""
    refused: list[tuple[list[T], str]] = []
    writes = 0
    exhausted = False

    def search(part: list[list[T]], known: int | None, known_why: str) -> None:
        """`known`: how many of `part`'s items are refused, if already known."""
        nonlocal writes, exhausted
        items = [item for segment in part for item in segment]
        if known == 0:
            return  # stored by the write that covered it
        if known == len(items):
            refused.append((items, known_why))
            return
        if writes >= max_writes:
            exhausted = True
            refused.append((items, f"not told apart: {max_writes} writes per batch were spent"))
            return
        writes += 1
        try:
            write(items)
            return
        except Exception as error:
            if is_transient(error):
                raise
            why = describe(error)
        count = refused_count(why)
        if len(items) == 1 or count == len(items):
            refused.append((items, why))
            return
        first, second = _split(part, count)
        before, was_exhausted = sum(len(got) for got, _ in refused), exhausted
        search(first, None, why)
        in_first = sum(len(got) for got, _ in refused) - before
        sure = count is not None and exhausted == was_exhausted
        search(second, count - in_first if sure else None, why)  # type: ignore[operator]

    search([list(segment) for segment in segments if segment], None, "")
    return refused


def _split(part: list[list[T]], count: int | None) -> tuple[list[list[T]], list[list[T]]]:
    """Two halves of a refused part: between bins while it has several, the one whose size is
    the refused count first; then the items of the one bin, halved."""
    if len(part) > 1:
        for index, segment in enumerate(part):
            if len(segment) == count:
                return [segment], part[:index] + part[index + 1 :]
        middle = len(part) // 2
        return part[:middle], part[middle:]
    items = part[0]
    middle = len(items) // 2
    return [items[:middle]], [items[middle:]]
