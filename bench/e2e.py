"""End-to-end bot overhead: interaction received -> result posted, minus the provider's time.

Run: python bench/e2e.py   (about 20 s; no network: fake Discord and fake image API on 127.0.0.1)
``--quick``: three requests instead of 25, to prove the script works (CI runs it).

The whole bot runs as in production (discord.py client, gateway, REST, the queue, SQLite, the
image worker); only Discord and the image API are the test fakes. For each /imagine of one
1024x1024 image we measure the time from the interaction's dispatch to the public result being
stored by the fake Discord, and subtract the time the fake image API spent on the request
(measured by the client around its HTTP call). Baseline, same process: the provider call alone
through the same client. Target: bot overhead under 50 ms at the median.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.app import open_bot  # noqa: E402
from bot.ops.metrics import Metrics  # noqa: E402
from bot.providers import GenerateRequest  # noqa: E402
from bot.testing.discord import FakeDiscord  # noqa: E402
from bot.testing.harness import make_settings  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
RUNS = 25
SOURCES = ("channel", "followup", "response")


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake, FakeImagesAPI() as api:
            # A rate limit this run never reaches: the queue's pacing is measured by dispatch.py.
            settings = make_settings(
                Path(folder), fake, api, model="dall-e-2", images_per_minute=1_000_000
            )
            # One member sends every request: the per-member request rate must not refuse them.
            jobs = dataclasses.replace(settings.jobs, member_requests_per_minute=10_000)
            settings = dataclasses.replace(settings, jobs=jobs)
            metrics = Metrics()
            async with (
                open_bot(settings, metrics=metrics, guild_ready_timeout=0.05) as bot,
                fake.running(bot),
            ):
                provider_alone = []
                for _ in range(RUNS):
                    started = time.perf_counter()
                    await bot.engine.provider.generate(
                        GenerateRequest("a lighthouse", size="1024x1024", model="dall-e-2")
                    )
                    provider_alone.append(time.perf_counter() - started)

                totals, overheads = [], []
                latency = metrics.provider_latency.labels(operation="generations")

                def results() -> int:
                    found = fake.messages(sources=SOURCES)
                    return sum(1 for m in found if m.attachments and not m.ephemeral)

                for index in range(RUNS):
                    seen = results()
                    before = latency._sum.get()
                    started = time.perf_counter()
                    await fake.slash("imagine", {"prompt": f"a lighthouse {index}"})
                    await fake.wait_for_message(
                        lambda m, seen=seen: results() > seen, timeout=30, sources=SOURCES
                    )
                    total = time.perf_counter() - started
                    provider = latency._sum.get() - before
                    totals.append(total)
                    overheads.append(total - provider)
                    await bot.runner.wait_idle()

    overhead = statistics.median(overheads)
    baseline = statistics.median(provider_alone)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(f"### End-to-end benchmark (median of {RUNS} /imagine, one 1024x1024 image each){mode}\n")
    print("| measure | median |")
    print("|---|---:|")
    print(f"| interaction received -> result posted | {statistics.median(totals) * 1000:.1f} ms |")
    print(f"| provider call alone (baseline, same client) | {baseline * 1000:.1f} ms |")
    print(
        "| bot overhead (total minus the provider's HTTP time: POST /images/generations, "
        f"request sent to answer read) | {overhead * 1000:.1f} ms "
        f"(target < 50 ms: {'yes' if overhead < 0.05 else 'NO'}) |"
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS = 3
    asyncio.run(main())
