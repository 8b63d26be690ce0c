"""Throughput: jobs per second through the whole bot, at 4, 16 and 64 jobs in flight.

Run: python bench/pipeline.py   (about a minute on 2 cores; no network: fakes on 127.0.0.1)
``--quick``: a few jobs per level, to prove the script works (CI runs it).

The whole bot runs as in production (discord.py client against the fake Discord, the queue,
SQLite, the image worker), with ``[jobs] concurrency`` set to the level. C members each send
/imagine, wait for its result to be posted, and send the next, so C requests are in flight at
every moment. The image API is the test fake in a process of its own, with no latency and no
rate limit, answering every request with the same photo-like 1024x1024 PNG of about 1.6 MB
(base64 in JSON, as gpt-image models answer): its work is not this process's. The fake Discord
(receiving each 1.6 MB upload) runs in this process, on the bot's event loop: its share is in the
CPU figure (its checks of every request against the OpenAPI specs are off: they are the tests'
business, not the bot's cost). SQL per job is counted with SQLAlchemy's events; "unanswered"
counts requests the bot acknowledged after Discord's 3 seconds (Discord drops them; the rate
counts only answered ones). Target: at least 100 jobs/s.
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
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle  # noqa: E402
from bot.testing.harness import make_settings  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
LEVELS = (4, 16, 64)
#: Jobs measured per level, after WARMUP jobs that are not.
JOBS, WARMUP = 320, 16


async def level(concurrency: int, base_url: str, api_key: str) -> tuple[float, float, str, int]:
    """Jobs per second, CPU milliseconds per job (this process), SQL per job, and how many
    requests got no answer (the bot acknowledged them after Discord's 3 seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake:
            api = FakeImagesAPI(api_key)  # not started: the one in the other process answers
            api.base_url = base_url
            settings = make_settings(
                Path(folder), fake, api, model="dall-e-2", images_per_minute=1_000_000
            )
            jobs = dataclasses.replace(
                settings.jobs,
                concurrency=concurrency,
                member_requests_per_minute=10_000,
                max_queued_per_member=1000,
                max_queued_per_guild=100_000,
            )
            settings = dataclasses.replace(settings, jobs=jobs)
            members = [fake.add_member(fake.guild, f"member{i}") for i in range(concurrency)]
            async with open_bot(settings, guild_ready_timeout=0.05) as bot, fake.running(bot):
                sql = _bench.SqlCount(bot.storage.engine)
                left = WARMUP + JOBS
                unanswered = 0
                counted: list[tuple[float, float, tuple[int, int, int, int]]] = []

                async def member(who: FakeMember) -> None:
                    nonlocal left, unanswered
                    while left > 0:
                        left -= 1
                        if left == JOBS - 1:  # the warm-up is over: count from here
                            now = (time.perf_counter(), time.process_time(), sql.snapshot())
                            counted.append(now)
                        handle = await fake.slash("imagine", {"prompt": "a lighthouse"}, user=who)

                        def answered(handle: InteractionHandle = handle) -> bool | None:
                            if handle.record.late_callback:  # acknowledged after 3 s: refused
                                return False
                            posted = any(m.attachments and not m.ephemeral for m in handle.messages)
                            return True if posted else None

                        if not await fake.state.pulse.wait_until(answered, 120, lambda: "result"):
                            unanswered += 1
                        for message in handle.messages:  # the fake keeps every upload: drop it
                            for attachment in message.attachments:
                                fake.state.blobs.pop(attachment.id, None)

                await asyncio.gather(*(member(who) for who in members))
                await bot.runner.wait_idle()
                wall, cpu = time.perf_counter(), time.process_time()
                started_wall, started_cpu, started_sql = counted[0]
                per_job = _bench.SqlCount.per_job(started_sql, sql.snapshot(), JOBS)
    rate = (JOBS - unanswered) / (wall - started_wall)
    return rate, (cpu - started_cpu) * 1000 / JOBS, per_job, unanswered


async def main(base_url: str, api_key: str) -> None:
    rows = [(c, *await level(c, base_url, api_key)) for c in LEVELS]
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(f"### Pipeline benchmark ({JOBS} /imagine per level, 1.6 MB PNG answers){mode}\n")
    print(
        "| jobs in flight | jobs/s | CPU per job (bot + fake Discord) "
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
        asyncio.run(main(url, key))
