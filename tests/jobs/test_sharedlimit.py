"""One rate limit for every process on PostgreSQL: together they stay under the provider's
limit, near it, and a pause or a dead process affects every one of them as it should.

Each "process" is a limiter on its own engine (its own connections), as in separate workers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import ProviderSettings
from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.imaging import ImageWorker
from bot.jobs.sharedlimit import SharedRateLimiter, longest_request
from bot.providers import GenerateRequest, ImagesClient, build_model_table
from bot.testing.openai_api import FakeImagesAPI

#: The provider's "minute" in these tests.
WINDOW = 2.0
#: Our window: the provider's minute and a second per minute of margin.
OUR_WINDOW = WINDOW * (1 + 1 / 60)

Processes = Callable[..., Awaitable[list[SharedRateLimiter]]]


@pytest.fixture
async def engines(postgres_url: str) -> AsyncIterator[list[AsyncEngine]]:
    """Engines on one migrated database; each stands for one process."""
    made: list[AsyncEngine] = []
    first = create_engine(postgres_url)
    made.append(first)
    await upgrade_database(first)
    try:
        yield made
    finally:
        for engine in made:
            await engine.dispose()


@pytest.fixture
def processes(engines: list[AsyncEngine], postgres_url: str) -> Processes:
    """``await processes(n, limits, **options)``: n limiters, each on its own engine."""

    async def make(count: int, limits: dict[str, int | None], **options: Any) -> list[Any]:
        while len(engines) < count:
            engines.append(create_engine(postgres_url))
        options.setdefault("window", WINDOW)
        options.setdefault("max_in_flight", 30.0)
        return [
            SharedRateLimiter(create_sessionmaker(engine), limits, **options)
            for engine in engines[:count]
        ]

    return make


async def db_now(engine: AsyncEngine) -> float:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT extract(epoch from clock_timestamp())"))
        return float(result.scalar_one())


def most_in_any_window(received: list[tuple[float, int]], window: float) -> int:
    received = sorted(received)
    best = 0
    for i, (start, _) in enumerate(received):
        best = max(best, sum(n for t, n in received[i:] if t < start + window))
    return best


async def test_three_processes_together_stay_under_the_limit_and_close_to_it(
    processes: Processes, engines: list[AsyncEngine]
) -> None:
    """60 images per 2 s "minute", three processes each sending requests of 1-3 images from
    three tasks at once, for four windows: the provider (which counts a request when it
    receives it) never sees more than 60 in any window, and sees most of what it allows."""
    limiters = await processes(3, {"default": 60})
    received: list[tuple[float, int]] = []
    rng = random.Random(13)
    seconds = 4 * WINDOW

    async def sender(limiter: SharedRateLimiter, engine: AsyncEngine, until: float) -> None:
        while True:
            images = rng.randint(1, 3)
            grant = await limiter.acquire("default", images)
            if grant.granted_at >= until:
                await limiter.release(grant)
                return
            received.append((await db_now(engine), images))  # the provider gets it
            await asyncio.sleep(rng.uniform(0.02, 0.2))  # and answers after a while
            await limiter.answered(grant)

    start = await db_now(engines[0])
    async with asyncio.timeout(seconds + 10):
        await asyncio.gather(
            *(
                sender(limiter, engine, start + seconds)
                for limiter, engine in zip(limiters, engines, strict=True)
                for _ in range(3)
            )
        )
    assert most_in_any_window(received, WINDOW) <= 60
    # Each request holds its images from its grant until a window after its answer; at most
    # 60 per (window + margin + latency) is what the rules allow.
    sent = sum(n for _, n in received)
    assert sent >= 0.8 * 60 * seconds / (OUR_WINDOW + 0.2), sent
    assert max(t for t, _ in received) > start + seconds - WINDOW / 2  # not all at first


async def test_a_request_in_flight_holds_its_images_until_a_window_after_its_answer(
    processes: Processes,
) -> None:
    first, second = await processes(2, {"default": 4}, burst=4)
    slow = await first.acquire("default", 4, job_id=1)
    waiting = asyncio.create_task(second.acquire("default", 1))
    await asyncio.sleep(1.5)  # however long the provider takes
    assert not waiting.done()
    await first.answered(slow)
    await first.answered(slow)  # idempotent
    answered_at = slow.granted_at + 1.5
    grant = await asyncio.wait_for(waiting, OUR_WINDOW + 3)
    assert grant.granted_at >= answered_at + OUR_WINDOW - 0.05
    assert grant.granted_at <= answered_at + OUR_WINDOW + 1.5


async def test_a_quiet_lane_grants_its_burst_at_once(processes: Processes) -> None:
    (limiter,) = await processes(1, {"default": 60})  # burst: a tenth, 6 images
    grants = [await limiter.acquire("default", 1) for _ in range(6)]
    assert grants[-1].granted_at - grants[0].granted_at < 0.5
    seventh = await limiter.acquire("default", 1)
    assert seventh.granted_at - grants[0].granted_at >= WINDOW / 60 - 0.01


async def test_a_pause_from_one_process_holds_back_every_other(processes: Processes) -> None:
    first, second, third = await processes(3, {"default": 600, "other": 600})
    before = await second.acquire("default", 1)
    await first.pause("default", 1.5)
    await third.pause("default", 0.2)  # a shorter pause does not shorten it
    paused = asyncio.gather(
        second.acquire("default", 1), third.acquire("default", 1), first.acquire("default", 1)
    )
    asked = time.time()  # after the pauses' own round trips, which a busy machine slows
    other = await second.acquire("other", 1)  # another backend is not paused
    assert other.granted_at < asked + 0.5
    for grant in await paused:
        assert grant.granted_at >= before.granted_at + 1.5
        assert grant.granted_at <= before.granted_at + 1.5 + 1.5


async def test_a_dead_processes_request_stops_counting_after_the_bound(
    processes: Processes, engines: list[AsyncEngine]
) -> None:
    """A process sends 5 images of a 5-per-window limit and dies before the answer: the
    others wait for its grant's bound (then a window, as if answered then), not for ever."""
    dead, alive = await processes(2, {"default": 5}, burst=5, max_in_flight=1.0)
    lost = await dead.acquire("default", 5, job_id=7)
    await engines[0].dispose()  # it never answers
    grant = await asyncio.wait_for(alive.acquire("default", 1), 1.0 + OUR_WINDOW + 3)
    assert grant.granted_at >= lost.granted_at + 1.0 + OUR_WINDOW - 0.05
    assert grant.granted_at <= lost.granted_at + 1.0 + OUR_WINDOW + 1.5


async def test_a_request_never_sent_gives_its_images_back(processes: Processes) -> None:
    first, second = await processes(2, {"default": 3}, burst=3)
    unsent = await first.acquire("default", 3)
    waiting = asyncio.create_task(second.acquire("default", 1))
    await asyncio.sleep(0.2)
    await first.release(unsent)
    grant = await asyncio.wait_for(waiting, 2.0)
    assert grant.granted_at - unsent.granted_at < 1.6


async def test_unlimited_lanes_never_touch_the_database(
    processes: Processes, engines: list[AsyncEngine]
) -> None:
    (limiter,) = await processes(1, {"default": None, "sd": 0, "openai": 60})
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engines[0].sync_engine, "before_cursor_execute", count)
    for lane in ("default", "sd", "not-configured"):
        grant = await limiter.acquire(lane, 4, job_id=1)
        assert grant.id is None
        await limiter.answered(grant)
        await limiter.release(grant)
        await limiter.pause(lane, 30.0)
    assert statements == []
    await limiter.acquire("openai", 1)  # a limited lane does
    assert statements


def test_a_grant_of_a_dead_process_is_bounded_by_the_longest_request() -> None:
    settings = ProviderSettings(timeout_seconds=100.0, max_retries=2, max_retry_wait_seconds=10)
    assert longest_request(settings) == 3 * 100.0 + 2 * 10.0


async def test_limiters_in_several_processes_draw_no_429_from_the_provider(
    processes: Processes, fake_images_api: FakeImagesAPI
) -> None:
    """The fake provider allows 8 images per 2 s sliding window and answers 429 beyond; three
    processes with two senders each ask it for images through the real client."""
    api = fake_images_api
    api.images_per_minute, api.rate_window = 8, WINDOW
    api.delay = 0.05
    limiters = await processes(3, {"default": 8})
    settings = ProviderSettings(
        base_url=api.base_url, api_key=api.api_key, model="dall-e-2", max_retries=0
    )
    results: list[int] = []
    async with aiohttp.ClientSession() as session, ImageWorker() as images:
        client = ImagesClient(
            session, settings, build_model_table({}), verify=images.verify_results
        )
        loop = asyncio.get_running_loop()
        end = loop.time() + 3 * WINDOW

        async def sender(limiter: SharedRateLimiter, n: int) -> None:
            while loop.time() < end:
                grant = await limiter.acquire("default", n)
                try:
                    result = await client.generate(GenerateRequest("a fox", n=n, size="256x256"))
                finally:
                    await limiter.answered(grant)
                results.append(len(result.images))

        async with asyncio.timeout(3 * WINDOW + 15):
            await asyncio.gather(*(sender(limiter, n) for limiter in limiters for n in (1, 2)))
    assert api.count_429 == 0
    assert sum(results) >= 8 * 2  # at least two windows' worth went through
