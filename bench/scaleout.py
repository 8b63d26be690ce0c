"""Scale-out: jobs per second through the whole pipeline with 1, 2 and 4 worker processes.

Run: python bench/scaleout.py   (about 2 minutes on 2 cores; starts its own PostgreSQL from
Debian's packages, as the tests do; no network: the fakes run on 127.0.0.1)
``--quick``: two rounds of jobs per level, to prove the script works (CI runs it).

Every bot process is ``python -m bot ...`` as an operator starts it, with one config file. On
PostgreSQL one gateway process (``run --no-worker``: it validates, defers and enqueues) takes
the /imagine and W ``worker`` processes claim the jobs from the shared queue, call the provider,
record the result and deliver it to the fake Discord over REST; on SQLite one ``run`` process
does everything. Each process runs ``[jobs] concurrency = 4`` jobs at once. The image API is the
test fake with 1 s of latency per request and no rate limit, answering a photo-like 256x256 PNG
(the queue's scaling is measured, not the image bytes': bench/pipeline.py does those), so one
worker makes at most 4 jobs per second and W workers 4 W: the scaling should be near linear.
Members of 8 servers send a burst of 12 jobs per slot (48 for one worker) at once through the
fake Discord; the rate is the burst over the time from the first /imagine to the last result
posted (the first second is the provider's latency: 12 rounds make it 1/12 of the figure). The
fakes share this script's process and event loop; "unanswered" counts the interactions the bot
acknowledged after Discord's 3 seconds.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()  # the fakes' request checks are not the bot's cost

import asyncio  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle  # noqa: E402
from bot.testing.openai_api import FakeImagesAPI  # noqa: E402
from bot.testing.postgres import PostgresServer, running_postgres  # noqa: E402
from tests.scaleout.cluster import Cluster, cluster  # noqa: E402

QUICK = False
WORKERS = (1, 2, 4)
CONCURRENCY = 4
#: Jobs per slot (a slot: one job at a time in one process) in each burst.
ROUNDS = 12
LATENCY = 1.0
GUILDS, MEMBERS_PER_GUILD = 8, 4
ROOMY = (
    "images_per_day = 100000\nimages_per_month = 1000000\nspend_per_month_usd = 100000.0\n"
    "member_images_per_day = 100000\nmax_images_per_day = 100000\n"
    "max_images_per_month = 1000000\nmax_spend_per_month_usd = 100000.0\n"
    "max_member_images_per_day = 100000\ntotal_spend_per_month_usd = 100000.0\n"
)


def posted(handle: InteractionHandle) -> bool:
    return any(m.attachments and not m.ephemeral for m in handle.messages)


async def burst(bots: Cluster, members: list[FakeMember], jobs: int) -> tuple[float, int]:
    """``jobs`` /imagine at once from ``members`` in turn: seconds until every result was
    posted, and how many interactions were answered late (after 3 s)."""
    fake = bots.fake
    started = time.perf_counter()
    handles = await asyncio.gather(
        *(bots.imagine(members[i % len(members)], "a lighthouse") for i in range(jobs))
    )
    await bots.until(lambda: all(posted(h) for h in handles), "every result", timeout=60 + jobs / 2)
    elapsed = time.perf_counter() - started
    for handle in handles:  # the fake keeps every upload: drop them
        for message in handle.messages:
            for attachment in message.attachments:
                fake.state.blobs.pop(attachment.id, None)
    return elapsed, sum(1 for h in handles if h.record.late_callback)


async def level(server: PostgresServer | None, workers: int) -> tuple[float, int, int]:
    """Jobs per second with ``workers`` worker processes on PostgreSQL (``server``), or one
    ``run`` process on SQLite (``server`` None); the jobs, and how many were answered late."""
    jobs = ROUNDS * CONCURRENCY * workers
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake, FakeImagesAPI() as api:
            api.delay, api.noise_bits = LATENCY, 2
            members = []
            for g in range(GUILDS):
                guild = fake.add_guild(f"Server {g}")
                fake.add_channel(guild, "art")
                members += [fake.add_member(guild, f"m{g}-{i}") for i in range(MEMBERS_PER_GUILD)]
            url = (
                server.create_database()
                if server is not None
                else f"sqlite+aiosqlite:///{Path(folder) / 'bot.db'}"
            )
            async with cluster(
                Path(folder), fake, api, url, concurrency=CONCURRENCY, quotas_extra=ROOMY
            ) as bots:
                if server is None:
                    await bots.start("bot", "run")
                else:
                    await bots.start("gateway", "run", "--no-worker")
                await fake.wait_ready(timeout=60)
                await bots.synced()
                if server is not None:
                    await asyncio.gather(*(bots.worker(f"worker-{i}") for i in range(workers)))
                await burst(bots, members, CONCURRENCY * workers)  # warm-up: one round
                elapsed, late = await burst(bots, members, jobs)
                for name in list(bots.processes):
                    await bots.stop(name)
    return jobs / elapsed, jobs, late


async def main() -> None:
    rows = [("SQLite, one process (`run`)", *await level(None, 1), 1)]
    with running_postgres() as server:
        for workers in WORKERS:
            name = f"PostgreSQL, 1 gateway + {workers} worker(s)"
            rows.append((name, *await level(server, workers), workers))
    base = rows[1][1]
    mode = " (quick mode: not the benchmark)" if QUICK else ""
    print(
        f"### Scale-out benchmark (provider latency {LATENCY:g} s, unlimited; "
        f"{CONCURRENCY} jobs at once per process){mode}\n"
    )
    print("| processes | jobs | jobs/s | ideal jobs/s | vs 1 worker | unanswered |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rate, jobs, late, workers in rows:
        ideal = CONCURRENCY * workers / LATENCY
        ratio = f"{rate / base:.2f}x" if name.startswith("PostgreSQL") else "-"
        print(f"| {name} | {jobs} | {rate:.2f} | {ideal:.0f} | {ratio} | {late} |")
    most = rows[-1]
    scaling = most[1] / base
    print(
        f"\n{most[4]} workers: {scaling:.2f}x one worker "
        f"(near linear, >= {0.8 * most[4]:.1f}x: {'yes' if scaling >= 0.8 * most[4] else 'NO'})"
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        ROUNDS = 2
    asyncio.run(main())
