"""End-to-end bot overhead: interaction received -> result posted, minus the provider's time.

Run: python bench/e2e.py   (about 30 s; no network: fake Discord and fake image API on 127.0.0.1)
``--quick``: three requests instead of 25, to prove the script works (CI runs it).

The whole bot runs as in production (discord.py client, gateway, REST, the queue, SQLite, the
image worker); only Discord and the image API are the test fakes, each in a process of its own,
as the real ones are other machines: their work (the fake Discord parsing each 1.6 MB upload,
the fake API encoding its answer) is not counted as the bot's. The image API answers every
request with a realistic image: a photo-like 1024x1024 PNG of about 1.6 MB (``noise_bits =
2``), sent as base64 in JSON as gpt-image models do. For each /imagine the fake Discord's
process measures the time from sending the interaction to storing the public result, and this
(the bot's) process subtracts the time the provider took: the client's own measure of its HTTP
call (request sent to the whole answer read). What is left is overhead: decoding and checking
the answer, the queue, the database, and the bot's REST calls to Discord, including the time
the fake Discord (in its process, on a shared machine) takes to answer them; nothing of
Discord's is subtracted. The fakes' checks of every request against the OpenAPI specs are off
(they are the tests' business, not the bot's cost). Baseline, same process: the provider call
alone through the same client (answer decoded and checked). The CPU time of the bot's process
per job (``time.process_time``, every thread of it: the bot alone) and the SQL the bot ran
per job (SQLAlchemy's events) are counted too. Target: bot overhead under 10 ms at the median,
at most two write transactions per job on the hot path.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()  # the fakes' request checks are not the bot's cost

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.app import open_bot  # noqa: E402
from bot.ops.metrics import Metrics  # noqa: E402
from bot.providers import GenerateRequest  # noqa: E402
from bot.testing.harness import make_settings  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402

QUICK = False
RUNS = 25
SOURCES = ("channel", "followup", "response")


async def main(discord: _bench.DiscordProcess, base_url: str, api_key: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        api = FakeImagesAPI(api_key)  # not started: the one in the other process answers
        api.base_url = base_url
        # A rate limit this run never reaches: the queue's pacing is measured by dispatch.py.
        settings = make_settings(
            Path(folder),
            discord,  # type: ignore[arg-type]  # only its token and addresses are read
            api,
            model="dall-e-2",
            images_per_minute=1_000_000,
        )
        # One member sends every request: the per-member request rate must not refuse them.
        jobs = dataclasses.replace(settings.jobs, member_requests_per_minute=10_000)
        settings = dataclasses.replace(settings, jobs=jobs)
        metrics = Metrics()
        async with (
            open_bot(settings, metrics=metrics, guild_ready_timeout=0.05) as bot,
            _bench.run_client(bot, discord.token),
        ):
            sql = _bench.SqlCount(bot.storage)
            provider_alone = []
            for _ in range(RUNS):
                started = time.perf_counter()
                await bot.engine.provider.generate(
                    GenerateRequest("a lighthouse", size="1024x1024", model="dall-e-2")
                )
                provider_alone.append(time.perf_counter() - started)

            totals, overheads, cpu = [], [], []
            latency = metrics.provider_latency.labels(operation="generations")
            for index in range(RUNS):
                before = latency._sum.get()
                started_cpu = time.process_time()
                # One prompt: the fake makes its image once (its time is the provider's anyway).
                walls, unanswered = await discord.imagine(1, 1)
                assert walls and not unanswered, "the /imagine got no result"
                provider = latency._sum.get() - before
                totals.append(walls[0])
                overheads.append(walls[0] - provider)
                await bot.runner.wait_idle()
                cpu.append(time.process_time() - started_cpu)
                if index == 0:
                    counted = sql.snapshot()  # from the second job on (the first warms up)
            per_job = _bench.SqlCount.per_job(counted, sql.snapshot(), RUNS - 1)

    overhead = statistics.median(overheads)
    baseline = statistics.median(provider_alone)
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(
        f"### End-to-end benchmark (median of {RUNS} /imagine, one 1024x1024 photo-like PNG "
        f"of 1.6 MB each){mode}\n"
    )
    print("| measure | median |")
    print("|---|---:|")
    print(f"| interaction received -> result posted | {statistics.median(totals) * 1000:.1f} ms |")
    print(f"| provider call alone (baseline, same client) | {baseline * 1000:.1f} ms |")
    print(
        "| bot overhead (total minus the provider's HTTP time: POST /images/generations, "
        f"request sent to answer read) | {overhead * 1000:.1f} ms "
        f"(target < 10 ms: {'yes' if overhead < 0.01 else 'NO'}) |"
    )
    print(
        "| CPU per job, the bot's process (the fakes run in two others) "
        f"| {statistics.median(cpu) * 1000:.1f} ms |"
    )
    print(f"| SQL per job: statements (writes) / transactions (writes) | {per_job} |")


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        RUNS = 3
    with _bench.images_api_process() as (url, key), _bench.discord_process() as discord:
        asyncio.run(main(discord, url, key))
