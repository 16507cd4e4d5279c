"""api.report_cache on its own: one computation per key however many ask at once, answers kept
for the TTL and no longer, failures never kept, a caller that goes away cancels nothing for
the others. The routes' use of it (scope first, keys, new data after the TTL) is tested on real
servers in tests/test_compliance_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from api.report_cache import ReportCache


class Counted:
    """A computation that counts its runs and takes `seconds` (so that callers overlap)."""

    def __init__(self, seconds: float = 0.05, fail: bool = False) -> None:
        self.runs, self.seconds, self.fail = 0, seconds, fail

    async def __call__(self) -> int:
        self.runs += 1
        run = self.runs
        await asyncio.sleep(self.seconds)
        if self.fail:
            raise LookupError(f"run {run} failed")
        return run


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_identical_misses_wait_for_one_computation() -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](60), Counted()
        answers = await asyncio.gather(*(cache.get("ranking", compute) for _ in range(20)))
        assert answers == [1] * 20 and compute.runs == 1
        assert await cache.get("ranking", compute) == 1 and compute.runs == 1  # remembered

    run(body)


def test_another_key_is_another_computation() -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](60), Counted()
        first, second = await asyncio.gather(
            cache.get(("site", "a"), compute), cache.get(("site", "b"), compute)
        )
        assert {first, second} == {1, 2} and compute.runs == 2

    run(body)


def test_an_answer_is_kept_for_the_ttl_counted_from_when_its_computation_began() -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](0.3), Counted(seconds=0.2)
        assert await cache.get("k", compute) == 1
        assert await cache.get("k", compute) == 1  # 0.2 s after it began: kept
        await asyncio.sleep(0.15)  # 0.35 s after it began, though finished only 0.15 s ago
        assert await cache.get("k", compute) == 2

    run(body)


def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    async def body() -> None:
        cache, failing = ReportCache[int](60), Counted(fail=True)
        answers = await asyncio.gather(
            *(cache.get("k", failing) for _ in range(5)), return_exceptions=True
        )
        assert [str(a) for a in answers] == ["run 1 failed"] * 5 and failing.runs == 1
        assert await cache.get("k", Counted()) == 1  # tried again

    run(body)


def test_a_caller_that_goes_away_cancels_nothing_for_the_others() -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](60), Counted(seconds=0.1)
        first = asyncio.ensure_future(cache.get("k", compute))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(cache.get("k", compute))
        await asyncio.sleep(0.01)
        first.cancel()  # the request that started the computation lost its client
        assert await second == 1 and compute.runs == 1
        assert first.cancelled()
        assert await cache.get("k", compute) == 1  # and its answer was kept

    run(body)


def test_ttl_zero_computes_every_time() -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](0), Counted(seconds=0)
        assert [await cache.get("k", compute) for _ in range(3)] == [1, 2, 3]

    run(body)


@pytest.mark.parametrize("size", [1, 3])
def test_at_most_size_answers_the_oldest_go_first(size: int) -> None:
    async def body() -> None:
        cache, compute = ReportCache[int](60, size=size), Counted(seconds=0)
        for key in range(size + 1):
            await cache.get(key, compute)
        assert await cache.get(size, compute) == size + 1  # the newest: kept
        assert await cache.get(0, compute) == size + 2  # the oldest: dropped, computed again

    run(body)
