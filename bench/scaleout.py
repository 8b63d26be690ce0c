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
Members of 8 servers each send /imagine through the fake Discord, wait for the result and send
the next, twice as many members as there are slots (a slot: one job at a time in one process),
so jobs always wait in the queue; 12 jobs per slot are measured (48 for one worker) after a
warm-up, the rate from the first /imagine to the last result posted (the first second is the
provider's latency: 12 rounds make it 1/12 of the figure). CPU per job is counted for the bot's
processes together, PostgreSQL's server processes, and this script's process, which runs both
fakes in one event loop; "unanswered" counts the interactions the bot acknowledged after
Discord's 3 seconds.
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()
_bench.skip_spec_checks()  # the fakes' request checks are not the bot's cost

import asyncio  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes used so far (Linux: /proc/PID/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(server: PostgresServer | None) -> list[int]:
    """The server's postmaster and its children (a backend per connection), which live as
    long as the bot's pooled connections do."""
    if server is None:
        return []
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if parent == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def cpu_of(pids: list[int]) -> float:
    try:
        return cpu_seconds(pids)
    except OSError:  # a backend ended: count the others
        return sum(cpu_of([pid]) for pid in pids) if len(pids) > 1 else 0.0


def posted(handle: InteractionHandle) -> bool:
    return any(m.attachments and not m.ephemeral for m in handle.messages)


async def closed_loop(bots: Cluster, members: list[FakeMember], jobs: int) -> tuple[float, int]:
    """Each member sends /imagine, waits for its result to be posted and sends the next, until
    ``jobs`` were sent: seconds until every result was posted, and how many interactions were
    answered late (after 3 s)."""
    fake, left, late = bots.fake, jobs, 0

    async def member(who: FakeMember) -> None:
        nonlocal left, late
        while left > 0:
            left -= 1
            handle = await bots.imagine(who, "a lighthouse")
            await bots.until(functools.partial(posted, handle), "a result", timeout=120)
            late += handle.record.late_callback
            for message in handle.messages:  # the fake keeps every upload: drop them
                for attachment in message.attachments:
                    fake.state.blobs.pop(attachment.id, None)

    started = time.perf_counter()
    await asyncio.gather(*(member(who) for who in members))
    return time.perf_counter() - started, late


async def measured_run(
    bots: Cluster, members: list[FakeMember], jobs: int, database: list[int]
) -> tuple[float, int, int, float, float, float]:
    """``jobs`` sent by ``members``, each with one in flight: the figures :func:`level`
    returns (``database``: PostgreSQL's processes, whose CPU is counted too)."""
    pids = [p.process.pid for p in bots.processes.values()]
    before = cpu_seconds(pids), cpu_of(database), time.process_time()
    elapsed, late = await closed_loop(bots, members, jobs)
    after = cpu_seconds(pids), cpu_of(database), time.process_time()
    bots_cpu, database_cpu, fakes_cpu = (
        (b - a) * 1000 / jobs for a, b in zip(before, after, strict=True)
    )
    return jobs / elapsed, jobs, late, bots_cpu, database_cpu, fakes_cpu


async def level(
    server: PostgresServer | None, workers: int
) -> tuple[float, int, int, float, float, float]:
    """Jobs per second with ``workers`` worker processes on PostgreSQL (``server``), or one
    ``run`` process on SQLite (``server`` None); the jobs, how many were answered late, and
    CPU milliseconds per job: the bot's processes together, PostgreSQL's, and this process's
    (the fakes)."""
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
                # twice as many members in flight as the processes run jobs: always a queue
                senders = members[: 2 * CONCURRENCY * workers]
                await closed_loop(bots, senders, len(senders))  # warm-up
                measured = await measured_run(bots, senders, jobs, postgres_pids(server))
                for name in list(bots.processes):
                    await bots.stop(name)
    return measured


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
    print(
        "| processes | jobs | jobs/s | ideal jobs/s | vs 1 worker | unanswered "
        "| CPU per job: bot processes, PostgreSQL, the fakes |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, rate, jobs, late, bots_cpu, database_cpu, fakes_cpu, workers in rows:
        ideal = CONCURRENCY * workers / LATENCY
        ratio = f"{rate / base:.2f}x" if name.startswith("PostgreSQL") else "-"
        print(
            f"| {name} | {jobs} | {rate:.2f} | {ideal:.0f} | {ratio} | {late} "
            f"| {bots_cpu:.1f} ms, {database_cpu:.1f} ms, {fakes_cpu:.1f} ms |"
        )
    most = rows[-1]
    scaling, workers = most[1] / base, most[-1]
    print(
        f"\n{workers} workers: {scaling:.2f}x one worker "
        f"(near linear, >= {0.8 * workers:.1f}x: {'yes' if scaling >= 0.8 * workers else 'NO'}); "
        f"CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    QUICK = _bench.quick_mode(__doc__)
    if QUICK:
        ROUNDS = 2
    asyncio.run(main())
