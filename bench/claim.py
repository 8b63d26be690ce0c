"""The shared queue on PostgreSQL (bot.jobs.claims): claim and enqueue latency with a long
queue, and fairness with several claimers side by side.

Run: python bench/claim.py   (a few minutes on 2 cores; starts its own PostgreSQL from
Debian's binaries). ``--quick`` (CI) runs 10,000 queued jobs in 1,000 guilds with fewer
claims, in well under a minute: it proves the script works, its figures are not the benchmark.

1. Fill: 100,000 queued jobs across 10,000 guilds (three members each), written with COPY and
   the keys :func:`bot.jobs.claims.enqueue` would have given them one by one; a sample of the
   same pushes really enqueued in another database must get the same keys (checked).
2. Latency, p50 and p99 of one claim (a transaction: the statement and its commit) and of one
   enqueue (an admission's insert and :func:`claims.enqueue`, committed, half of them in guilds
   that already wait, half in new ones), with 1,000 and with 100,000 queued; then with every
   enqueue in a guild that has 200,000 jobs done (quick: 20,000), a big server's ledger. Flat
   is the aim: the index, not the queue's length or the ledger's, sets the cost.
3. Fairness: a lone guild's job enqueued while every other guild waits in the current round;
   1, 2 and 4 claimers (each its own connection) take jobs until it is claimed. How many claims
   went before it, against its place when it was queued (one job per other guild in the round)
   plus one per claimer (a claim under way when it was queued).
"""

from __future__ import annotations

import _bench  # first: see bench/_bench.py

_bench.use_project_imports()

import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import func, select, tuple_, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from bot.db import Job, JobStatus, create_engine, create_sessionmaker, upgrade_database  # noqa: E402
from bot.db.engine import Sessions  # noqa: E402
from bot.jobs import claims  # noqa: E402
from bot.testing.postgres import PostgresServer, PostgresUnavailable, required  # noqa: E402

MEMBERS = 3
LANE = "default"
LEASE = 60.0


def pushes(queued: int, guilds: int, seed: int = 13) -> list[tuple[int, int]]:
    """(guild, user) of each job in the order they are queued: every guild gets its share, in
    a random order; members of a guild take their turns at random."""
    rng = random.Random(seed)
    order = [(1 + n % guilds) for n in range(queued)]
    rng.shuffle(order)
    return [(guild, guild * 10 + rng.randrange(MEMBERS)) for guild in order]


def keys_for(jobs: Sequence[tuple[int, int]], first_id: int = 1) -> list[int]:
    """The ``fair_round`` each job gets when ``jobs`` are enqueued one by one before any claim:
    every guild joins in round 0 with its first job's id, and its jobs take rounds in member
    round-robin order (members by their first job, each one's jobs oldest first)."""
    members: dict[int, dict[int, list[int]]] = {}
    seqs: dict[int, int] = {}
    for index, (guild, user) in enumerate(jobs):
        seqs.setdefault(guild, first_id + index)
        members.setdefault(guild, {}).setdefault(user, []).append(index)
    keys = [0] * len(jobs)
    for guild, by_member in members.items():
        lists, depth, round_ = list(by_member.values()), 0, 0
        while True:
            turn = [queue[depth] for queue in lists if depth < len(queue)]
            if not turn:
                break
            for index in turn:
                keys[index] = claims.fair_key(round_, seqs[guild])
                round_ += 1
            depth += 1
    return keys


async def fill(engine: AsyncEngine, jobs: Sequence[tuple[int, int]], history: int = 0) -> None:
    """Write ``jobs`` queued with their keys (ids 1..n) by COPY: a hundred times faster than
    enqueuing them, with the same rows. ``history``: that many delivered jobs of guild 1 too
    (a big server's ledger: its queued jobs must be found without reading them)."""
    now = datetime.now(UTC)
    keys = keys_for(jobs)
    records = [
        (index + 1, guild, guild, user, "generate", "gpt-image-1", "a lighthouse", 1, 0, 1,
         "imagine", "queued", 40_000, False, now, LANE, keys[index], False)
        for index, (guild, user) in enumerate(jobs)
    ]  # fmt: skip
    records += [
        (len(jobs) + 1 + n, 1, 1, 10 + n % 50, "generate", "gpt-image-1", "a lighthouse", 1, 1,
         1, "imagine", "delivered", 40_000, False, now - timedelta(seconds=history - n), LANE,
         None, False)
        for n in range(history)
    ]  # fmt: skip
    columns = [
        "id", "guild_id", "channel_id", "user_id", "operation", "model", "prompt",
        "n_requested", "n_delivered", "n_charged", "command", "status", "cost_micro_usd",
        "possibly_billed", "queued_at", "lane", "fair_round", "cancel_requested",
    ]  # fmt: skip
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("jobs", records=records, columns=columns)
        await driver.execute(
            "SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT max(id) FROM jobs))"
        )
        await driver.execute("ANALYZE jobs")


async def enqueue_one(sessions: Sessions, guild: int, user: int) -> Job:
    """What an admission does for the queue: insert the job, flush, enqueue, commit."""
    job = Job(
        guild_id=guild,
        channel_id=guild,
        user_id=user,
        operation="generate",
        model="gpt-image-1",
        prompt="a lighthouse",
        status=JobStatus.QUEUED,
        command="imagine",
    )
    async with sessions() as session, session.begin():
        session.add(job)
        await session.flush()
        await claims.enqueue(session, job)
    return job


async def check_sample(server: PostgresServer, jobs: Sequence[tuple[int, int]]) -> int:
    """Enqueue ``jobs`` for real in a database of their own: the keys must be :func:`keys_for`'s."""
    engine = create_engine(server.create_database())
    try:
        await upgrade_database(engine)
        sessions = create_sessionmaker(engine)
        for guild, user in jobs:
            await enqueue_one(sessions, guild, user)
        async with sessions() as session:
            found = (await session.execute(select(Job.fair_round).order_by(Job.id))).scalars()
            real = list(found)
    finally:
        await engine.dispose()
    expected = keys_for(jobs)
    if real != expected:
        wrong = sum(1 for a, b in zip(real, expected, strict=True) if a != b)
        raise SystemExit(f"the bulk fill's keys differ from real enqueues ({wrong} of {len(jobs)})")
    return len(jobs)


def p50_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def latencies(
    server: PostgresServer, queued: int, guilds: int, rounds: int, history: int = 0
) -> tuple[list[float], list[float]]:
    """Wall seconds of ``rounds`` claims and ``rounds`` enqueues with ``queued`` waiting
    (``history``: every enqueue in guild 1, which has that many jobs done)."""
    engine = create_engine(server.create_database())
    try:
        await upgrade_database(engine)
        await fill(engine, pushes(queued, guilds), history)
        sessions = create_sessionmaker(engine)
        for _ in range(20):  # warm the pool and the caches
            await claims.claim(sessions, LANE, "warm-up", LEASE)
        claimed, enqueued = [], []
        rng = random.Random(7)
        for number in range(rounds):
            started = time.perf_counter()
            job = await claims.claim(sessions, LANE, "bench", LEASE)
            claimed.append(time.perf_counter() - started)
            assert job is not None
            # a waiting guild half the time (its queue re-keyed), a new one the other half
            guild = rng.randrange(1, guilds + 1) if number % 2 else 10**6 + number
            guild = 1 if history else guild
            started = time.perf_counter()
            new = await enqueue_one(sessions, guild, guild * 10 + rng.randrange(MEMBERS + 1))
            enqueued.append(time.perf_counter() - started)
            if history:  # done at once: the big guild's queue stays at its ten or so
                await finish(sessions, new.id)
    finally:
        await engine.dispose()
    return claimed, enqueued


async def finish(sessions: Sessions, job_id: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job_id).values(status=JobStatus.DELIVERED)
        )


async def jobs_ahead(sessions: Sessions, job: Job) -> int:
    """Every queued job before ``job`` in the fair order, counted to the end."""
    async with sessions() as session:
        found = await session.scalar(
            select(func.count()).where(
                Job.lane == LANE,
                Job.status == JobStatus.QUEUED,
                tuple_(Job.fair_round, Job.id) < tuple_(job.fair_round, job.id),
            )
        )
    return found or 0


async def fairness(
    server: PostgresServer, queued: int, guilds: int, claimers: int
) -> tuple[int, int]:
    """(claims before a lone guild's job, its jobs ahead when queued) with ``claimers``."""
    engine = create_engine(server.create_database())
    try:
        await upgrade_database(engine)
        await fill(engine, pushes(queued, guilds))
        sessions = create_sessionmaker(engine)
        # a third of the round served: the lone guild joins mid-round
        for _ in range(guilds // 3):
            await claims.claim(sessions, LANE, "before", LEASE)
        lone: int | None = None
        taken = 0
        claimed_at: int | None = None
        stop = asyncio.Event()

        async def claimer(name: str) -> None:
            nonlocal taken, claimed_at
            while not stop.is_set():
                job = await claims.claim(sessions, LANE, name, LEASE)
                if job is None:
                    return
                if job.id == lone:
                    claimed_at = taken
                    stop.set()
                    return
                if lone is not None:
                    taken += 1

        workers = [asyncio.create_task(claimer(f"w{i}")) for i in range(claimers)]
        await asyncio.sleep(0.05)  # they are claiming when the lone guild's job arrives
        job = await enqueue_one(sessions, 10**7, 10**8)
        ahead = await jobs_ahead(sessions, job)  # claims.places stops counting at the cap
        lone = job.id
        await asyncio.gather(*workers)
        assert claimed_at is not None, "the lone guild's job was never claimed"
        return claimed_at, ahead
    finally:
        await engine.dispose()


async def main(quick: bool) -> None:
    queued_big, guilds_big = (10_000, 1_000) if quick else (100_000, 10_000)
    rounds = 200 if quick else 2_000
    history = 20_000 if quick else 200_000
    sizes = [(1_000, 100, 0), (queued_big, guilds_big, 0), (queued_big, guilds_big, history)]
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as error:
        if required():
            raise
        print(f"skipped: {error}")
        return
    try:
        # 40 guilds' jobs in the big fill's order: about ten each, members mixed
        mixed = [push for push in pushes(queued_big, guilds_big) if push[0] <= 40]
        sample = await check_sample(server, mixed[:400])
        print("\n### The shared queue on PostgreSQL (bench/claim.py)\n")
        print(f"Load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores.\n")
        print(f"Bulk fill checked: {sample} jobs really enqueued got the keys the fill writes.\n")
        print("| queued (guilds) | claim p50 | claim p99 | enqueue p50 | enqueue p99 |")
        print("|---|---:|---:|---:|---:|")
        for queued, guilds, history in sizes:
            claimed, enqueued = await latencies(server, queued, guilds, rounds, history)
            c50, c99 = p50_p99(claimed)
            e50, e99 = p50_p99(enqueued)
            done = f", enqueued in a guild with {history:,} jobs done" if history else ""
            print(
                f"| {queued:,} ({guilds:,}){done} | {c50 * 1000:.2f} ms | {c99 * 1000:.2f} ms "
                f"| {e50 * 1000:.2f} ms | {e99 * 1000:.2f} ms |"
            )
        print(f"\nFairness: a new guild's job among {queued_big:,} queued in {guilds_big:,} guilds")
        print("(a third of the current round already served).\n")
        print("| claimers | jobs ahead when queued | claims before it | bound: ahead + claimers |")
        print("|---:|---:|---:|---:|")
        for claimers in (1, 2, 4):
            before, ahead = await fairness(server, queued_big, guilds_big, claimers)
            verdict = "yes" if before <= ahead + claimers else "NO"
            print(f"| {claimers} | {ahead:,} | {before:,} | {ahead + claimers:,}: {verdict} |")
    finally:
        server.stop()


if __name__ == "__main__":
    started = time.perf_counter()
    asyncio.run(main(_bench.quick_mode(__doc__)))
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
