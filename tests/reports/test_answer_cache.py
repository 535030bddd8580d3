"""The report answer cache: reused while fresh, computed again after, one computation for concurrent askers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from proxy.reports.answer_cache import AnswerCache


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A blocking computation that says how many times it ran."""

    def __init__(self, clock: Clock | None = None, takes: float = 0.0) -> None:
        self.runs = 0
        self.clock, self.takes = clock, takes

    def __call__(self) -> str:
        self.runs += 1
        if self.clock is not None:
            self.clock.now += self.takes  # the queries took this long
        return f"answer {self.runs}"


def test_an_answer_is_reused_while_fresh_and_computed_again_after() -> None:
    clock = Clock()
    cache: AnswerCache[str] = AnswerCache(10, clock=clock)
    compute = Counted()

    async def scenario() -> list[str]:
        answers = [await cache.get("q", compute)]
        clock.now += 9.9
        answers.append(await cache.get("q", compute))
        clock.now += 0.1  # 10 s after the first computation started: stale
        answers.append(await cache.get("q", compute))
        answers.append(await cache.get("other query", compute))
        return answers

    assert asyncio.run(scenario()) == ["answer 1", "answer 1", "answer 2", "answer 3"]
    assert compute.runs == 3


def test_an_answers_age_counts_from_when_its_computation_started() -> None:
    clock = Clock()
    cache: AnswerCache[str] = AnswerCache(10, clock=clock)
    slow = Counted(clock, takes=4.0)

    async def scenario() -> list[str]:
        answers = [await cache.get("q", slow)]  # started at 1000, done at 1004: good until 1010
        clock.now = 1009.9
        answers.append(await cache.get("q", slow))
        clock.now = 1010.0
        answers.append(await cache.get("q", slow))
        return answers

    assert asyncio.run(scenario()) == ["answer 1", "answer 1", "answer 2"]


def test_concurrent_askers_share_one_computation() -> None:
    cache: AnswerCache[str] = AnswerCache(10)
    release = threading.Event()
    compute = Counted()

    def held() -> str:
        release.wait(10)
        return compute()

    async def scenario() -> list[str]:
        waiting = [asyncio.create_task(cache.get("q", held)) for _ in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == ["answer 1"] * 20
    assert compute.runs == 1


def test_zero_seconds_keeps_nothing() -> None:
    cache: AnswerCache[str] = AnswerCache(0)
    compute = Counted()

    async def scenario() -> list[str]:
        return [await cache.get("q", compute) for _ in range(3)]

    assert asyncio.run(scenario()) == ["answer 1", "answer 2", "answer 3"]
    assert len(cache) == 0


def test_a_failure_is_not_kept() -> None:
    cache: AnswerCache[str] = AnswerCache(10)
    outcomes = iter([RuntimeError("database down"), "answer"])

    def flaky() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def scenario() -> str:
        with pytest.raises(RuntimeError, match="database down"):
            await cache.get("q", flaky)
        return await cache.get("q", flaky)

    assert asyncio.run(scenario()) == "answer"


def test_entries_are_bounded_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache: AnswerCache[str] = AnswerCache(10, max_entries=3, clock=clock)
    compute = Counted()

    async def scenario() -> list[str]:
        for key in ("a", "b", "c", "d"):
            await cache.get(key, compute)
        # "a" was dropped for "d": asked again, it is computed anew; "d" is still kept
        return [await cache.get("a", compute), await cache.get("d", compute)]

    assert asyncio.run(scenario()) == ["answer 5", "answer 4"]
    assert len(cache) == 3


def test_stale_entries_are_dropped_when_a_new_answer_is_kept() -> None:
    clock = Clock()
    cache: AnswerCache[str] = AnswerCache(10, clock=clock)
    compute = Counted()

    async def scenario() -> None:
        for key in ("a", "b", "c"):
            await cache.get(key, compute)
        clock.now += 11
        await cache.get("d", compute)

    asyncio.run(scenario())
    assert len(cache) == 1
