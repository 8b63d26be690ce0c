"""The shared queue's order in the database (bot.jobs.claims), on PostgreSQL and SQLite.

Jobs go in the way admission puts them (inserted, flushed, then :func:`claims.enqueue` in the
same transaction) and come out by :func:`claims.claim`; the order is compared with the
in-memory fair queue's for the same pushes.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.config import DEFAULT_BACKEND
from bot.db import Job, JobStatus, create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Sessions
from bot.jobs import claims
from bot.jobs.dispatcher import POSITION_CAP
from bot.jobs.fairqueue import FairQueue, QueuedJob
from bot.quotas.ledger import lock_guild

LEASE = 60.0


@pytest.fixture(params=["postgresql", "sqlite"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = create_engine(url)
    await upgrade_database(engine)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_sessions(postgres_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(postgres_url)
    await upgrade_database(engine)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _guild_key(guild: int | None, user: int) -> Hashable:
    return ("dm", user) if guild is None else guild


@dataclass
class Queues:
    """The database queue and, beside it, the fair queue of each lane fed the same pushes."""

    sessions: Sessions
    fair: dict[str, FairQueue] = field(default_factory=lambda: defaultdict(FairQueue))
    #: job id -> (guild, user) as pushed, for the tests' own checks.
    who: dict[int, tuple[int | None, int]] = field(default_factory=dict)

    async def push(self, guild: int | None, user: int, lane: str = DEFAULT_BACKEND) -> int:
        job = await enqueue(self.sessions, guild, user, lane)
        self.fair[lane].push(QueuedJob(job.id, _guild_key(guild, user), user, lane=lane))
        self.who[job.id] = (guild, user)
        return job.id

    async def claim(self, lane: str = DEFAULT_BACKEND) -> int | None:
        job = await claims.claim(self.sessions, lane, "worker-1", LEASE)
        return None if job is None else job.id

    def fair_pop(self, lane: str = DEFAULT_BACKEND) -> int | None:
        popped = self.fair[lane].pop()
        return None if popped is None else popped.job_id


async def enqueue(
    sessions: Sessions, guild: int | None, user: int, lane: str = DEFAULT_BACKEND
) -> Job:
    """A queued job admitted the way bot.jobs.store.admit does: flushed, then enqueued."""
    job = Job(
        guild_id=guild,
        channel_id=None if guild is None else guild + 1,
        user_id=user,
        operation="generate",
        model="gpt-image-1",
        prompt="a lighthouse",
        status=JobStatus.QUEUED,
        backend=None if lane == DEFAULT_BACKEND else lane,
    )
    async with sessions() as session, session.begin():
        session.add(job)
        await session.flush()
        await claims.enqueue(session, job)
    return job


async def drain(queues: Queues, lane: str = DEFAULT_BACKEND) -> list[int]:
    claimed = []
    while (job_id := await queues.claim(lane)) is not None:
        claimed.append(job_id)
    return claimed


def fair_drain(queues: Queues, lane: str = DEFAULT_BACKEND) -> list[int]:
    popped = []
    while (job_id := queues.fair_pop(lane)) is not None:
        popped.append(job_id)
    return popped


def _random_origin(rng: random.Random) -> tuple[int | None, int]:
    guild = rng.choice([None, 100, 200, 300, 400, 500])
    return guild, rng.randrange(1, 5) + (0 if guild is None else guild)


@pytest.mark.parametrize("seed", range(8))
async def test_the_claim_order_is_the_fair_queues_for_the_same_pushes(
    sessions: Sessions, seed: int
) -> None:
    rng = random.Random(seed)
    queues = Queues(sessions)
    for _ in range(40):
        guild, user = _random_origin(rng)
        await queues.push(guild, user, rng.choice(["default", "sd"]))
    for lane in ("default", "sd"):
        assert await drain(queues, lane) == fair_drain(queues, lane)


@pytest.mark.parametrize("seed", range(8))
async def test_claims_between_pushes_keep_the_fair_queues_order(
    sessions: Sessions, seed: int
) -> None:
    """Pops and pushes interleaved, members joining and leaving their guild's rotation; guilds
    join before the first claim (see test_a_guild_that_joins_... for later ones)."""
    rng = random.Random(seed)
    queues = Queues(sessions)
    for _ in range(12):
        await queues.push(*_random_origin(rng))
    for _ in range(60):
        queued = {queues.who[job.job_id] for job in queues.fair["default"].order()}
        if queued and rng.random() < 0.55:
            guild, _user = rng.choice(sorted(queued, key=str))
            user = rng.randrange(1, 5) + (0 if guild is None else guild)
            if guild is None:  # a DM's pseudo-guild is its user's
                user = _user
            await queues.push(guild, user)
        else:
            assert await queues.claim() == queues.fair_pop()
    assert await drain(queues) == fair_drain(queues)


@pytest.mark.parametrize("seed", range(6))
async def test_a_new_guilds_first_job_waits_at_most_one_turn_per_other_guild(
    sessions: Sessions, seed: int
) -> None:
    """Any interleaving, guilds joining, leaving and coming back at any time."""
    rng = random.Random(seed)
    queues = Queues(sessions)
    waiting: dict[int, int] = {}  # a guild's first job -> the turns it may still wait
    for _ in range(90):
        if rng.random() < 0.6:
            guild, user = rng.choice([None, 1, 2, 3, 4, 5, 6, 7]), rng.randrange(1, 4)
            queued = {_guild_key(*queues.who[j.job_id]) for j in queues.fair["default"].order()}
            job_id = await queues.push(guild, user)
            if _guild_key(guild, user) not in queued:
                waiting[job_id] = len(queued)
        else:
            claimed = await queues.claim()
            if claimed is not None:
                queues.fair["default"].remove(claimed)
            if claimed in waiting:
                assert waiting.pop(claimed) >= 0
            for job_id in waiting:
                waiting[job_id] -= 1
    for claimed in await drain(queues):
        if claimed in waiting:
            assert waiting.pop(claimed) >= 0
        for job_id in waiting:
            waiting[job_id] -= 1


async def test_a_guild_that_joins_goes_to_the_end_of_the_current_round(
    sessions: Sessions,
) -> None:
    """A backlog of 5 in each of two guilds; a third guild's job waits behind one job of each
    (the round under way), not behind their backlogs."""
    queues = Queues(sessions)
    a = [await queues.push(1, 11) for _ in range(5)]
    b = [await queues.push(2, 21) for _ in range(5)]
    assert await queues.claim() == a[0]
    late = await queues.push(3, 31)
    assert [await queues.claim() for _ in range(4)] == [b[0], late, a[1], b[1]]


async def test_members_of_a_guild_take_turns(sessions: Sessions) -> None:
    queues = Queues(sessions)
    first = [await queues.push(1, 11) for _ in range(3)]
    second = [await queues.push(1, 12) for _ in range(2)]
    third = await queues.push(1, 13)
    assert await drain(queues) == [first[0], second[0], third, first[1], second[1], first[2]]


async def test_a_member_whose_turn_came_goes_behind_the_others(sessions: Sessions) -> None:
    queues = Queues(sessions)
    u1, u2 = await queues.push(1, 11), await queues.push(1, 11)
    v1 = await queues.push(1, 12)
    assert await queues.claim() == u1
    u3 = await queues.push(1, 11)
    w1 = await queues.push(1, 13)
    assert await drain(queues) == [v1, u2, w1, u3]


async def test_direct_messages_are_a_guild_of_their_own_per_user(sessions: Sessions) -> None:
    queues = Queues(sessions)
    busy = [await queues.push(None, 7) for _ in range(3)]
    other = await queues.push(None, 8)
    guild = await queues.push(1, 7)
    assert await drain(queues) == [busy[0], other, guild, busy[1], busy[2]]


async def test_lanes_are_independent_queues(sessions: Sessions) -> None:
    queues = Queues(sessions)
    default = [await queues.push(1, 11) for _ in range(3)]
    sd = await queues.push(2, 21, "sd")
    assert await queues.claim("sd") == sd
    assert await queues.claim("sd") is None
    assert await drain(queues) == default
    assert await queues.claim("nothing-here") is None


async def test_a_claim_marks_the_job_running_for_its_worker_with_a_lease(
    sessions: Sessions,
) -> None:
    job = await enqueue(sessions, 1, 11)
    claimed = await claims.claim(sessions, "default", "worker-7", 30.0)
    assert claimed is not None and claimed.id == job.id
    async with sessions() as session:
        row = await session.get(Job, job.id)
    assert row is not None
    assert row.status is JobStatus.RUNNING
    assert row.worker_id == "worker-7"
    assert row.started_at is not None and row.lease_until is not None
    lease = (row.lease_until - row.started_at).total_seconds()
    assert 25 < lease < 35
    assert await claims.claim(sessions, "default", "worker-7", 30.0) is None


async def test_claim_any_takes_from_the_first_lane_with_a_job(sessions: Sessions) -> None:
    sd = await enqueue(sessions, 1, 11, "sd")
    default = await enqueue(sessions, 1, 11)
    first = await claims.claim_any(sessions, ["comfy", "sd", "default"], "w", LEASE)
    second = await claims.claim_any(sessions, ["comfy", "sd", "default"], "w", LEASE)
    assert (first and first.id, second and second.id) == (sd.id, default.id)
    assert await claims.claim_any(sessions, ["comfy", "sd", "default"], "w", LEASE) is None


async def test_eight_concurrent_claimers_never_take_one_job_twice(
    pg_sessions: Sessions,
) -> None:
    for i in range(60):
        await enqueue(pg_sessions, i % 7, 1000 + i % 3)

    async def claimer(name: str) -> list[int]:
        taken = []
        while (job := await claims.claim(pg_sessions, "default", name, LEASE)) is not None:
            taken.append(job.id)
            await asyncio.sleep(0)
        return taken

    taken = await asyncio.gather(*(claimer(f"worker-{i}") for i in range(8)))
    every = [job_id for batch in taken for job_id in batch]
    assert len(every) == len(set(every)) == 60
    assert sum(1 for batch in taken if batch) > 1  # they really ran side by side
    async with pg_sessions() as session:
        for name, batch in zip((f"worker-{i}" for i in range(8)), taken, strict=True):
            for job_id in batch:
                row = await session.get(Job, job_id)
                assert row is not None and row.worker_id == name


async def test_places_count_the_jobs_claimed_before_each(sessions: Sessions) -> None:
    queues = Queues(sessions)
    for guild, user in [(1, 11), (1, 11), (1, 12), (2, 21), (None, 5), (2, 22), (3, 31)]:
        await queues.push(guild, user)
    sd = await queues.push(1, 11, "sd")
    order = [job.job_id for job in queues.fair["default"].order()]
    assert await claims.places(sessions, [*order, sd]) == {
        **{job_id: ahead for ahead, job_id in enumerate(order)},
        sd: 0,
    }
    assert await queues.claim() == order[0]
    assert await claims.places(sessions, order) == {
        job_id: ahead for ahead, job_id in enumerate(order[1:])
    }
    assert await claims.places(sessions, []) == {}


async def test_places_stop_counting_past_the_cap(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        for guild in range(POSITION_CAP + 3):
            job = Job(guild_id=guild, user_id=1, operation="generate", model="m")
            session.add(job)
            await session.flush()
            await claims.enqueue(session, job)
    last, near = job.id, job.id - 2  # ids follow the order: one job per guild
    assert await claims.places(sessions, [last, near, 10**6]) == {
        last: POSITION_CAP + 1,
        near: POSITION_CAP,
    }


async def test_queued_counts_are_the_members_and_the_guilds_on_every_lane(
    sessions: Sessions,
) -> None:
    for guild, user, lane in [(1, 11, "default"), (1, 11, "sd"), (1, 12, "default")]:
        await enqueue(sessions, guild, user, lane)
    for user in (11, 11, 12):
        await enqueue(sessions, None, user)
    await enqueue(sessions, 2, 11)
    assert await claims.queued_counts(sessions, 1, 11) == (2, 3)
    assert await claims.queued_counts(sessions, 1, 13) == (0, 3)
    assert await claims.queued_counts(sessions, None, 11) == (2, 2)
    assert await claims.queued_counts(sessions, 3, 11) == (0, 0)
    assert await claims.queue_length(sessions) == 7
    assert await claims.queue_length(sessions, "sd") == 1
    await claims.claim(sessions, "sd", "w", LEASE)
    assert await claims.queued_counts(sessions, 1, 11) == (1, 2)
    assert await claims.queue_length(sessions, "sd") == 0


async def test_a_cancelled_jobs_gap_does_not_cost_its_guild_a_round(sessions: Sessions) -> None:
    queues = Queues(sessions)
    a = [await queues.push(1, 11) for _ in range(3)]
    b = [await queues.push(2, 21) for _ in range(3)]
    async with sessions() as session, session.begin():
        job = await session.get(Job, a[1])
        assert job is not None
        job.status = JobStatus.CANCELLED
        await session.flush()
        await claims.withdrawn(session, job)
    assert await drain(queues) == [a[0], b[0], a[2], b[1], b[2]]


async def test_jobs_queued_without_a_key_get_one_in_the_order_they_were_queued(
    sessions: Sessions,
) -> None:
    """Queued before migration 0007, or copied from a SQLite database: claimable once keyed."""
    async with sessions() as session, session.begin():
        old = [
            Job(guild_id=guild, user_id=user, operation="generate", model="m", backend=backend)
            for guild, user, backend in [(1, 11, None), (1, 11, None), (2, 21, None), (1, 12, "sd")]
        ]
        session.add_all(old)
    assert await claims.claim(sessions, "default", "w", LEASE) is None
    assert await claims.enqueue_unkeyed(sessions) == 4
    assert await claims.enqueue_unkeyed(sessions) == 0
    order = [await claims.claim(sessions, "default", "w", LEASE) for _ in range(3)]
    assert [job and job.id for job in order] == [old[0].id, old[2].id, old[1].id]
    sd = await claims.claim(sessions, "sd", "w", LEASE)
    assert sd is not None and sd.id == old[3].id


async def test_admissions_and_claims_side_by_side_lose_no_job_and_run_none_twice(
    pg_sessions: Sessions,
) -> None:
    """Enqueues under the guild's lock (as admission takes it) while 4 claimers take jobs: the
    re-keying of a guild meets rows other transactions hold, and every job runs exactly once."""
    admitted: list[int] = []

    async def admit(guild: int, user: int) -> None:
        job = Job(guild_id=guild, user_id=user, operation="generate", model="m")
        async with pg_sessions() as session, session.begin():
            await lock_guild(session, guild)
            session.add(job)
            await session.flush()
            await claims.enqueue(session, job)
        admitted.append(job.id)

    async def admissions(guild: int) -> None:
        for n in range(15):
            await admit(guild, 10 * guild + n % 3)

    claimed: list[int] = []
    done = asyncio.Event()

    async def claimer(name: str) -> None:
        while True:
            job = await claims.claim(pg_sessions, "default", name, LEASE)
            if job is not None:
                claimed.append(job.id)
            elif done.is_set():
                return
            else:
                await asyncio.sleep(0.005)

    claimers = [asyncio.create_task(claimer(f"w{i}")) for i in range(4)]
    await asyncio.gather(*(admissions(guild) for guild in (1, 2, 3, 4)))
    done.set()
    await asyncio.gather(*claimers)
    assert len(admitted) == 60
    assert sorted(claimed) == sorted(admitted)
    assert await claims.queue_length(pg_sessions) == 0
