"""The dispatcher starts jobs fairly, within the concurrency and rate limits, without polling."""

from __future__ import annotations

import asyncio
import itertools

from bot.jobs.dispatcher import POSITION_CAP, Dispatcher
from bot.jobs.fairqueue import QueuedJob
from bot.jobs.ratelimit import ImageRateLimiter

UNLIMITED = ImageRateLimiter(10**9, burst=10**9)


async def test_never_more_than_the_concurrency_limit() -> None:
    running = 0
    peak = 0
    done: list[int] = []
    all_done = asyncio.Event()

    async def run(job: QueuedJob) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(job.job_id)
        if len(done) == 20:
            all_done.set()

    dispatcher = Dispatcher(run, concurrency=3, limiter=UNLIMITED)
    for job_id in range(20):
        dispatcher.push(QueuedJob(job_id, job_id % 4, 0))
    dispatcher.start()
    await asyncio.wait_for(all_done.wait(), 5)
    await dispatcher.stop()
    assert peak == 3


async def test_rate_limit_spaces_jobs_with_a_timer() -> None:
    started: list[float] = []
    loop = asyncio.get_running_loop()
    all_started = asyncio.Event()

    async def run(job: QueuedJob) -> None:
        started.append(loop.time())
        if len(started) == 10:
            all_started.set()

    # 600 images per 6 s window = one image every 10 ms, burst of one
    dispatcher = Dispatcher(run, concurrency=10, limiter=ImageRateLimiter(600, burst=1, window=6.0))
    for job_id in range(10):
        dispatcher.push(QueuedJob(job_id, "g", "u"))
    dispatcher.start()
    await asyncio.wait_for(all_started.wait(), 5)
    await dispatcher.stop()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert min(gaps) >= 0.009


async def test_places_and_removal_and_pause() -> None:
    release = asyncio.Event()

    async def run(job: QueuedJob) -> None:
        await release.wait()

    dispatcher = Dispatcher(run, concurrency=1, limiter=UNLIMITED)
    dispatcher.start()
    dispatcher.push(QueuedJob(1, "A", "x"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert 1 in dispatcher.running
    for job_id, guild in ((2, "A"), (3, "A"), (4, "B")):
        dispatcher.push(QueuedJob(job_id, guild, "x"))
    places = dispatcher.places([2, 3, 4])
    assert [places[j].position for j in (2, 4, 3)] == [1, 2, 3]
    assert places[2].eta_seconds < places[4].eta_seconds < places[3].eta_seconds
    assert dispatcher.remove(4) and not dispatcher.remove(4)
    dispatcher.pause()
    release.set()
    assert await dispatcher.wait_running(timeout=1)
    assert len(dispatcher.queue) == 2  # paused: nothing new started
    await dispatcher.stop()
    assert not dispatcher.alive


async def test_places_are_counted_up_to_the_cap_and_shown_as_far_beyond_it() -> None:
    """Positions past the cap are not counted: a job 1,500th in line is "1000+ ahead"."""

    async def run(job: QueuedJob) -> None:
        return None

    dispatcher = Dispatcher(run, concurrency=1, limiter=UNLIMITED)  # not started: all wait
    for job_id in range(POSITION_CAP + 500):
        dispatcher.push(QueuedJob(job_id, job_id % 7, job_id % 3))
    order = [job.job_id for job in dispatcher.queue.order()]
    at_cap, beyond, last = order[POSITION_CAP - 1], order[POSITION_CAP], order[-1]
    places = dispatcher.places([at_cap, beyond, last, 10**9])
    assert places[at_cap].position == POSITION_CAP and not places[at_cap].far
    assert places[beyond].far and places[last] == places[beyond]
    assert places[beyond].position == POSITION_CAP + 1
    assert places[beyond].eta_seconds >= places[at_cap].eta_seconds
    assert 10**9 not in places  # not queued: no place
    assert dispatcher.places([order[0]])[order[0]].position == 1
