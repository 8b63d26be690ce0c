"""The dispatcher starts jobs fairly, within the concurrency and rate limits, without polling."""

from __future__ import annotations

import asyncio
import itertools

from bot.jobs.dispatcher import POSITION_CAP, Dispatcher
from bot.jobs.fairqueue import QueuedJob
from bot.jobs.lanes import Lanes
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


async def test_each_backend_has_its_own_lane_within_the_total() -> None:
    """A one-at-a-time GPU lane and a four-at-once API lane under a total of 4: the GPU never
    runs two, the API never waits for the GPU's backlog, the total is never passed, and a
    waiting job's position counts only its own lane."""
    running: dict[str, int] = {"gpu": 0, "api": 0}
    peaks: dict[str, int] = {"gpu": 0, "api": 0}
    total_peak = 0
    finished: list[str] = []
    release = {"gpu": asyncio.Event(), "api": asyncio.Event()}

    async def run(job: QueuedJob) -> None:
        nonlocal total_peak
        running[job.lane] += 1
        peaks[job.lane] = max(peaks[job.lane], running[job.lane])
        total_peak = max(total_peak, sum(running.values()))
        await release[job.lane].wait()
        running[job.lane] -= 1
        finished.append(job.lane)

    lanes = Lanes(
        run,
        concurrency=4,
        lanes={"default": (4, UNLIMITED), "gpu": (1, ImageRateLimiter(10**9, burst=10**9))},
    )
    for job_id in range(5):
        lanes.push(QueuedJob(job_id, "g", job_id, lane="gpu"))
    for job_id in range(5, 11):
        lanes.push(QueuedJob(job_id, "g", job_id, lane="api"))  # not configured: default's
    lanes.start()
    await asyncio.sleep(0.05)
    assert (running["gpu"], running["api"]) == (1, 3)  # the total of 4, the GPU's one
    places = lanes.places([1, 4, 8, 10])
    assert places[1].position == 1 and places[4].position == 4  # behind GPU jobs only
    assert places[8].position == 1 and places[10].position == 3
    assert len(lanes.queue) == 7 and 4 in lanes.queue and lanes.queue.count(guild="g") == 7
    release["api"].set()
    await asyncio.sleep(0.05)
    assert finished.count("api") == 6 and running["gpu"] == 1  # none waited for the GPU
    release["gpu"].set()
    async with asyncio.timeout(5):
        while len(finished) < 11:  # noqa: ASYNC110 - the jobs are the test's own
            await asyncio.sleep(0.01)
    await lanes.stop()
    assert peaks == {"gpu": 1, "api": 3} and total_peak == 4


async def test_jobs_failed_over_between_two_lanes_both_way_never_wait_for_each_other() -> None:
    """Two one-at-a-time backends, each the other's fallback, both down: the job of each that
    moves to the other gets the slot its first backend no longer uses there, so neither waits
    forever for the other's."""
    lanes: Lanes
    moved: list[int] = []
    both_moving = asyncio.Barrier(2)

    async def run(job: QueuedJob) -> None:
        await both_moving.wait()  # both hold their own lane's slot, both are told "down"
        other = "b" if job.lane == "a" else "a"
        async with lanes.slot(job, other):
            moved.append(job.job_id)

    one = (1, UNLIMITED)
    lanes = Lanes(run, concurrency=4, lanes={"default": one, "a": one, "b": one})
    lanes.push(QueuedJob(1, "g", 1, lane="a"))
    lanes.push(QueuedJob(2, "g", 2, lane="b"))
    lanes.start()
    async with asyncio.timeout(5):
        while len(moved) < 2:  # noqa: ASYNC110 - the jobs are the test's own
            await asyncio.sleep(0.01)
    await lanes.stop()
    assert sorted(moved) == [1, 2]


async def test_jobs_moved_to_a_lane_and_its_own_queue_take_its_slot_in_turn() -> None:
    """The API is down and its jobs fail over to a one-at-a-time GPU lane that has a backlog
    of its own: the GPU runs one job at a time, a moved one and one of its own in turn, so
    neither waits for the other's whole backlog."""
    lanes: Lanes
    on_gpu: list[str] = []
    gpu_running = 0
    gpu_peak = 0

    async def use_gpu(name: str) -> None:
        nonlocal gpu_running, gpu_peak
        gpu_running += 1
        gpu_peak = max(gpu_peak, gpu_running)
        on_gpu.append(name)
        await asyncio.sleep(0.02)
        gpu_running -= 1

    async def run(job: QueuedJob) -> None:
        if job.lane == "gpu":
            await use_gpu("own")
            return
        async with lanes.slot(job, "gpu"):  # the API answered "down": moved to the GPU
            await use_gpu("moved")

    lanes = Lanes(run, concurrency=8, lanes={"default": (4, UNLIMITED), "gpu": (1, UNLIMITED)})
    for job_id in range(4):
        lanes.push(QueuedJob(job_id, "g", job_id, lane="gpu"))
    for job_id in range(4, 8):
        lanes.push(QueuedJob(job_id, "g", job_id))
    lanes.start()
    async with asyncio.timeout(5):
        while len(on_gpu) < 8:  # noqa: ASYNC110 - the jobs are the test's own
            await asyncio.sleep(0.01)
    await lanes.stop()
    assert gpu_peak == 1
    assert on_gpu[1:7] in (["moved", "own"] * 3, ["own", "moved"] * 3), on_gpu
