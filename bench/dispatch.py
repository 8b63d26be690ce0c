"""Queue benchmarks: dispatch overhead, fairness, and saturation of a rate-limited provider.

Run: python bench/dispatch.py   (about 30 s on 2 cores; no network: the provider is the test
fake). ``--quick`` runs every measure with few jobs and a short window in a few seconds: it
proves the script works (CI runs it), its figures are not the benchmark.

1. Dispatch overhead per job with 10,000 jobs queued across 1,000 guilds (target < 1 ms),
   against a baseline of starting the same 10,000 no-op tasks directly, in the same process.
2. Fairness: turns a lone guild's job waits while another guild has 1,000 queued (target <= 1).
3. Saturation: the real dispatcher and image client against the fake image API limited to
   L images per "minute", with the minute shortened so the run is short (the limiter and the
   fake use the same window). Target: at least 0.95 L per minute delivered, zero 429s.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402

from bot.config import ProviderSettings  # noqa: E402
from bot.imaging import ImageWorker  # noqa: E402
from bot.jobs.dispatcher import Dispatcher  # noqa: E402
from bot.jobs.fairqueue import QueuedJob  # noqa: E402
from bot.jobs.ratelimit import ImageRateLimiter  # noqa: E402
from bot.providers import GenerateRequest, ImagesClient, build_model_table  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
JOBS, GUILDS, RUNS = 10_000, 1_000, 5
BACKLOG = 1000
#: Saturation: L images per "minute", the minute shortened to WINDOW seconds, for MINUTES.
LIMIT, WINDOW, MINUTES = 120, 6.0, 3


async def _noop(_: QueuedJob) -> None:
    return None


async def dispatch_overhead() -> tuple[float, float]:
    """Median seconds per job through the dispatcher, and for bare task creation."""
    ours, bare = [], []
    for _ in range(RUNS):
        done = asyncio.Event()
        finished = 0

        async def run(_: QueuedJob, done: asyncio.Event = done) -> None:
            nonlocal finished
            finished += 1
            if finished == JOBS:
                done.set()

        dispatcher = Dispatcher(run, concurrency=64, limiter=ImageRateLimiter(10**9, burst=10**9))
        for job_id in range(JOBS):
            dispatcher.queue.push(QueuedJob(job_id, job_id % GUILDS, job_id % 7))
        started = time.perf_counter()
        dispatcher.start()
        await done.wait()
        ours.append((time.perf_counter() - started) / JOBS)
        await dispatcher.stop()

        started = time.perf_counter()
        tasks = [asyncio.create_task(_noop(QueuedJob(i, 0, 0))) for i in range(JOBS)]
        await asyncio.gather(*tasks)
        bare.append((time.perf_counter() - started) / JOBS)
    return statistics.median(ours), statistics.median(bare)


async def fairness() -> int:
    order: list[int] = []
    release = asyncio.Event()
    first_started, lone_started = asyncio.Event(), asyncio.Event()

    async def run(job: QueuedJob) -> None:
        order.append(job.job_id)
        first_started.set()
        if job.job_id == 99_999:
            lone_started.set()
        if job.job_id == 0:
            await release.wait()  # the busy guild's first job is running when the lone job arrives

    dispatcher = Dispatcher(run, concurrency=1, limiter=ImageRateLimiter(10**9, burst=10**9))
    for job_id in range(BACKLOG):
        dispatcher.push(QueuedJob(job_id, "busy", job_id % 10))
    dispatcher.start()
    await first_started.wait()
    dispatcher.push(QueuedJob(99_999, "quiet", "member"))
    release.set()
    await lone_started.wait()
    await dispatcher.stop()
    # turns taken by others between the lone job's arrival and its start
    return order.index(99_999) - 1


async def saturation(limit: int, window: float, minutes: int) -> tuple[float, int, int]:
    async with FakeImagesAPI() as api, aiohttp.ClientSession() as session, ImageWorker() as images:
        api.images_per_minute = limit
        api.rate_window = window
        settings = ProviderSettings(
            base_url=api.base_url, api_key=api.api_key, model="dall-e-2", max_retries=0
        )
        client = ImagesClient(
            session, settings, build_model_table({}), verify=images.verify_results
        )
        delivered = 0
        failures = 0

        async def run(job: QueuedJob) -> None:
            nonlocal delivered, failures
            try:
                result = await client.generate(
                    GenerateRequest("bench", n=job.images, size="256x256")
                )
                delivered += len(result.images)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    print("first failure:", repr(exc), getattr(exc, "detail", ""), file=sys.stderr)

        limiter = ImageRateLimiter(limit, window=window)
        dispatcher = Dispatcher(run, concurrency=8, limiter=limiter)
        sizes = (1, 2, 1, 4, 1, 3)
        for job_id in range(limit * (minutes + 2)):
            dispatcher.push(QueuedJob(job_id, job_id % 13, job_id % 5, sizes[job_id % 6]))
        started = time.perf_counter()
        dispatcher.start()
        await asyncio.sleep(window * minutes)
        elapsed = time.perf_counter() - started
        await dispatcher.stop()
        per_minute = delivered / (elapsed / window)
        return per_minute, api.count_429, failures


async def main() -> None:
    ours, bare = await dispatch_overhead()
    turns = await fairness()
    limit, window, minutes = LIMIT, WINDOW, MINUTES
    per_minute, count_429, failures = await saturation(limit, window, minutes)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(f"### Queue benchmark (median of {RUNS} runs where repeated){mode}\n")
    print("| measure | result | target |")
    print("|---|---:|---|")
    print(
        f"| dispatch overhead per job, {JOBS:,} jobs across {GUILDS:,} guilds | "
        f"{ours * 1000:.4f} ms (bare task start: {bare * 1000:.4f} ms, ratio {ours / bare:.1f}x) "
        f"| < 1 ms: {'yes' if ours < 0.001 else 'NO'} |"
    )
    print(
        f"| lone guild's job behind a {BACKLOG:,}-job backlog | {turns} turn(s) | "
        f"<= 1: {'yes' if turns <= 1 else 'NO'} |"
    )
    print(
        f"| saturation, L = {limit} images per minute (a minute shortened to {window:g} s, "
        f"{minutes} minute(s)) | {per_minute:.1f} per minute = {per_minute / limit:.3f} L, "
        f"{count_429} responses 429, {failures} failures | >= 0.95 L and 0 x 429: "
        f"{'yes' if per_minute >= 0.95 * limit and count_429 == 0 else 'NO'} |"
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        JOBS, GUILDS, RUNS, BACKLOG = 500, 50, 1, 100
        LIMIT, WINDOW, MINUTES = 60, 1.0, 1
    asyncio.run(main())
