"""Throughput: jobs per second through the whole bot, at 4, 16 and 64 jobs in flight.

Run: python bench/pipeline.py   (about a minute on 2 cores; no network: fakes on 127.0.0.1)
``--quick``: a few jobs per level, to prove the script works (CI runs it).

The whole bot runs as in production (discord.py client against the fake Discord, the queue,
SQLite, the image worker), with ``[jobs] concurrency`` and the backend's own ``concurrency``
(OpenAI's default is 4) set to the level. C members each send
/imagine, wait for its result to be posted, and send the next, so C requests are in flight at
every moment. The image API is the test fake in a process of its own, with no latency and no
rate limit, answering every request with the same photo-like 1024x1024 PNG of about 1.6 MB
(base64 in JSON, as gpt-image models answer). The fake Discord (its members, and receiving each
1.6 MB upload) runs in a third process, a new one per level: the CPU figure is the bot's process
alone (the fakes' checks of every request against the OpenAPI specs are off: they are the
tests' business, not the bot's cost). SQL per job is counted with SQLAlchemy's events;
"unanswered" counts requests the bot acknowledged after Discord's 3 seconds (Discord drops
them; the rate counts only answered ones). Target: at least 100 jobs/s.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()  # the fakes' request checks are not the bot's cost

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.app import open_bot  # noqa: E402
from bot.testing.harness import make_settings  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
LEVELS = (4, 16, 64)
#: Jobs measured per level, after WARMUP jobs that are not.
JOBS, WARMUP = 320, 16


async def level(
    discord: _bench.DiscordProcess, concurrency: int, base_url: str, api_key: str
) -> tuple[float, float, str, int]:
    """Jobs per second, CPU milliseconds per job (the bot's process), SQL per job, and how many
    requests got no answer (the bot acknowledged them after Discord's 3 seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        api = FakeImagesAPI(api_key)  # not started: the one in the other process answers
        api.base_url = base_url
        settings = make_settings(
            Path(folder),
            discord,  # type: ignore[arg-type]  # only its token and addresses are read
            api,
            model="dall-e-2",
            images_per_minute=1_000_000,
            concurrency=concurrency,  # the backend's own limit (OpenAI's default is 4) too
        )
        jobs = dataclasses.replace(
            settings.jobs,
            concurrency=concurrency,
            member_requests_per_minute=10_000,
            max_queued_per_member=1000,
            max_queued_per_guild=100_000,
        )
        settings = dataclasses.replace(settings, jobs=jobs)
        async with (
            open_bot(settings, guild_ready_timeout=0.05) as bot,
            _bench.run_client(bot, discord.token),
        ):
            sql = _bench.SqlCount(bot.storage)
            await discord.imagine(WARMUP, concurrency)
            await bot.runner.wait_idle()
            started_wall, started_cpu, started_sql = (
                time.perf_counter(),
                time.process_time(),
                sql.snapshot(),
            )
            _, unanswered = await discord.imagine(JOBS, concurrency)
            await bot.runner.wait_idle()
            wall, cpu = time.perf_counter(), time.process_time()
            per_job = _bench.SqlCount.per_job(started_sql, sql.snapshot(), JOBS)
    rate = (JOBS - unanswered) / (wall - started_wall)
    return rate, (cpu - started_cpu) * 1000 / JOBS, per_job, unanswered


def main(base_url: str, api_key: str) -> None:
    rows = []
    for concurrency in LEVELS:  # a fake Discord per level, forked before its event loop runs
        with _bench.discord_process(members=concurrency) as discord:
            rows.append((concurrency, *asyncio.run(level(discord, concurrency, base_url, api_key))))
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(f"### Pipeline benchmark ({JOBS} /imagine per level, 1.6 MB PNG answers){mode}\n")
    print(
        "| jobs in flight | jobs/s | CPU per job (the bot's process) "
        "| SQL per job: statements (writes) / transactions (writes) | unanswered |"
    )
    print("|---:|---:|---:|---|---:|")
    for concurrency, rate, cpu, per_job, unanswered in rows:
        print(f"| {concurrency} | {rate:.1f} | {cpu:.1f} ms | {per_job} | {unanswered} |")
    best = max(rate for _, rate, _, _, _ in rows)
    print(f"\nbest: {best:.1f} jobs/s (target >= 100: {'yes' if best >= 100 else 'NO'})")


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        JOBS, WARMUP = 8, 2
    with _bench.images_api_process() as (url, key):
        main(url, key)
