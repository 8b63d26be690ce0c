"""Heartbeats, leases and the reaper on a real PostgreSQL, with several "processes" (each its
own Leases, ProcessInfo and engine) in one test process.

A dead worker is one that stops renewing: its jobs are interrupted once after their lease by
whichever process wins them, possibly billed (what a member's /usage shows), each requester
told once; a live worker's long job is never reaped; a clean stop releases its own jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, update

from bot.app import build_catalogues, open_engine
from bot.config import DatabaseSettings
from bot.db import Sessions, create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Transactions
from bot.db.models import Job, JobStatus, Process, utcnow
from bot.jobs import JobOrigin, JobRunner, store
from bot.jobs.leases import Leases, live_processes, release_claim
from bot.jobs.processes import ProcessInfo
from bot.providers import ProviderUnavailable
from bot.quotas.reports import member_usage
from bot.testing.discord import FakeDiscord
from bot.testing.harness import ROOMY_QUOTAS
from bot.testing.openai_api import FakeImagesAPI
from tests.bot_process import bot_env, bot_process, write_config
from tests.jobs.test_runner import Recorder, make_settings, order
from tests.quotas.counting import counted, summed

GUILD = 1001
#: dall-e-2 at 256x256: $0.016 an image, in micro-dollars.
PRICE = 16_000
#: A lease long enough that no background pass runs during a test (passes every 15 s).
LONG = 60.0


@asynccontextmanager
async def databases(url: str, count: int) -> AsyncIterator[list[Sessions]]:
    """``count`` engines on one migrated database: one per "process"."""
    engines = [create_engine(url) for _ in range(count)]
    try:
        await upgrade_database(engines[0])
        yield [create_sessionmaker(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def admitted(sessions: Sessions, user: int, n: int = 1) -> Job:
    """A queued job with its reservation, as an admission leaves it."""
    origin = JobOrigin(
        user_id=user, guild_id=GUILD, channel_id=5, parent_channel_id=None, role_ids=()
    )
    job = store.new_job(order(f"job of {user}", n=n), origin, "dall-e-2", n * PRICE, "imagine")
    return await store.admit(Transactions(sessions), ROOMY_QUOTAS, job)


async def claimed(sessions: Sessions, job: Job, worker: str, lease_left: float) -> None:
    """``job`` running on ``worker``, its lease ending ``lease_left`` seconds from now
    (database time; negative: already ran out), as a claim and its renewals leave it."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                status=JobStatus.RUNNING,
                worker_id=worker,
                started_at=func.now(),
                lease_until=func.now() + timedelta(seconds=lease_left),
            )
        )


async def rows(sessions: Sessions) -> dict[int, Job]:
    async with sessions() as session:
        return {job.id: job for job in (await session.execute(select(Job))).scalars()}


async def started(stack: AsyncExitStack, leases: Leases, recorder: Recorder) -> Leases:
    await leases.start(lambda: recorder)
    stack.push_async_callback(leases.stop)
    return leases


async def test_expired_leases_are_interrupted_once_by_two_racing_reapers(
    postgres_url: str,
) -> None:
    async with (
        databases(postgres_url, 3) as (worker_db, gateway_db, other_db),
        AsyncExitStack() as stack,
    ):
        dead = [await admitted(worker_db, user=1 + i % 3, n=2) for i in range(12)]
        for job in dead:
            await claimed(worker_db, job, "dead-worker", lease_left=-1)
        alive = await admitted(worker_db, user=1)
        await claimed(worker_db, alive, "live-worker", lease_left=LONG)
        waiting = await admitted(worker_db, user=2)
        usage_before = await member_usage(worker_db, ROOMY_QUOTAS, GUILD, 1)

        told = [Recorder(), Recorder()]
        reapers = [
            await started(stack, Leases(gateway_db, ProcessInfo("gateway"), LONG), told[0]),
            await started(stack, Leases(other_db, ProcessInfo("worker"), LONG), told[1]),
        ]
        won = await asyncio.gather(*(reaper.reap_once() for reaper in reapers))

        expired = sorted(job.id for job in dead)
        assert sorted(job.id for job in won[0] + won[1]) == expired  # each job by one of them
        assert sorted(told[0].of("interrupted") + told[1].of("interrupted")) == expired
        for recorder, jobs in zip(told, won, strict=True):
            assert sorted(recorder.of("interrupted")) == sorted(job.id for job in jobs)
        assert [await reaper.reap_once() for reaper in reapers] == [[], []]  # once, not again
        assert sum(len(recorder.events) for recorder in told) == len(dead)

        after = await rows(worker_db)
        for job in dead:
            row = after[job.id]
            assert (row.status, row.error_code) == (JobStatus.INTERRUPTED, "interrupted")
            # Possibly billed: its estimate stays in the spend ledger, its images go.
            assert (row.possibly_billed, row.n_charged, row.cost_micro_usd) == (True, 0, 2 * PRICE)
            assert row.finished_at is not None
        assert after[alive.id].status is JobStatus.RUNNING
        assert after[waiting.id].status is JobStatus.QUEUED

        # What /usage shows member 1: the interrupted jobs' images are given back, the spend
        # (possibly billed) stays; the counters agree with the ledger's sums.
        usage_after = await member_usage(worker_db, ROOMY_QUOTAS, GUILD, 1)
        member_1_dead = sum(2 for i in range(12) if i % 3 == 0)
        assert usage_after.member_used == usage_before.member_used - member_1_dead
        assert usage_after.guild_today == usage_before.guild_today - 2 * len(dead)
        assert usage_after.spend_month == usage_before.spend_month
        async with worker_db() as session:
            for user in (1, 2, 3):
                assert await counted(session, GUILD, user, utcnow()) == await summed(
                    session, GUILD, user, utcnow()
                )


async def test_heartbeats_keep_a_live_workers_long_job_and_a_dead_ones_job_is_reaped(
    postgres_url: str,
) -> None:
    """Lease 3 s (a beat and a reaper pass every second): the live worker's job outlives
    several leases; the dead one's is reaped by the live worker's own reaper, once."""
    async with databases(postgres_url, 2) as (worker_db, gateway_db), AsyncExitStack() as stack:
        told = Recorder()
        worker = await started(stack, Leases(worker_db, ProcessInfo("worker"), 3.0), told)
        gateway = Leases(gateway_db, ProcessInfo("gateway"), 3.0)
        dead_one = Leases(gateway_db, ProcessInfo("worker"), 3.0)
        await dead_one.heartbeat_once()  # alive once, then never again
        long_job = await admitted(worker_db, user=1)
        await claimed(worker_db, long_job, worker.process.id, lease_left=3.0)
        orphan = await admitted(worker_db, user=2)
        await claimed(worker_db, orphan, dead_one.process.id, lease_left=3.0)

        assert await gateway.reap_once() == []  # nothing has run out yet
        await told.wait_for("interrupted", 1)
        await asyncio.sleep(4.0)  # over two leases in all

        assert told.of("interrupted") == [orphan.id]
        assert told.detail("interrupted", orphan.id).worker_id == dead_one.process.id
        assert await gateway.reap_once() == []
        after = await rows(worker_db)
        assert after[long_job.id].status is JobStatus.RUNNING
        assert after[orphan.id].status is JobStatus.INTERRUPTED
        # The dead one comes back (a paused VM): its renewal does not revive the job.
        assert await dead_one.heartbeat_once() == 0
        assert (await rows(worker_db))[orphan.id].status is JobStatus.INTERRUPTED


async def test_a_process_whose_renewal_was_late_does_not_reap_its_own_job(
    postgres_url: str,
) -> None:
    """A slow database delayed its renewal: it still runs the job, so it keeps it; another
    process, which cannot know it is alive, reaps it."""
    async with databases(postgres_url, 1) as (sessions,):
        worker = Leases(sessions, ProcessInfo("worker"), LONG)
        other = Leases(sessions, ProcessInfo("worker"), LONG)
        job = await admitted(sessions, user=1)
        await claimed(sessions, job, worker.process.id, lease_left=-1)
        assert await worker.reap_once() == []
        assert [reaped.id for reaped in await other.reap_once()] == [job.id]


async def test_a_clean_stop_interrupts_its_own_running_jobs_at_once_and_tells_each_once(
    postgres_url: str,
) -> None:
    async with databases(postgres_url, 1) as (sessions,):
        recorder = Recorder()
        worker = Leases(sessions, ProcessInfo("worker"), LONG)
        await worker.start(lambda: recorder)
        mine = await admitted(sessions, user=1)
        await claimed(sessions, mine, worker.process.id, lease_left=LONG)
        theirs = await admitted(sessions, user=2)
        await claimed(sessions, theirs, "another-worker", lease_left=LONG)

        await worker.stop()
        await worker.stop()  # closing twice (the app does) tells nobody twice

        assert recorder.of("interrupted") == [mine.id]
        after = await rows(sessions)
        assert (after[mine.id].status, after[mine.id].possibly_billed) == (
            JobStatus.INTERRUPTED,
            True,
        )
        assert after[theirs.id].status is JobStatus.RUNNING
        assert await live_processes(sessions, timedelta(seconds=LONG)) == []


async def test_a_process_row_appears_while_it_beats_and_goes_when_it_stops_or_is_stale(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with databases(postgres_url, 2) as (worker_db, gateway_db), AsyncExitStack() as stack:
        lease = timedelta(seconds=LONG)
        worker = await started(stack, Leases(worker_db, ProcessInfo("worker"), LONG), Recorder())
        gateway = Leases(gateway_db, ProcessInfo("gateway", (0, 1), 2), LONG)
        await gateway.start()
        async with worker_db() as session, session.begin():
            for name, age in (("long-dead", 11), ("lately-dead", 3)):
                await session.execute(
                    insert(Process).values(
                        id=name,
                        role="worker",
                        host="elsewhere",
                        pid=1,
                        started_at=func.now() - age * lease,
                        heartbeat_at=func.now() - age * lease,
                    )
                )

        alive = await live_processes(worker_db, 2 * lease)
        assert [(p.id, p.role, p.shards, p.host, p.pid) for p in alive] == [
            (worker.process.id, "worker", None, socket.gethostname(), os.getpid()),
            (gateway.process.id, "gateway", "0,1", socket.gethostname(), os.getpid()),
        ]

        await gateway.reap_once()  # the long-dead row goes; the lately dead one stays a while
        async with worker_db() as session:
            ids = set((await session.execute(select(Process.id))).scalars())
        assert ids == {worker.process.id, gateway.process.id, "lately-dead"}

        await gateway.stop()
        assert [p.id for p in await live_processes(worker_db, 2 * lease)] == [worker.process.id]

        # Deleted as stale while it was paused: its next heartbeat registers it again, and
        # the operator hears why its jobs may be gone.
        async with worker_db() as session, session.begin():
            await session.execute(delete(Process).where(Process.id == worker.process.id))
        with caplog.at_level(logging.WARNING, logger="bot.jobs.leases"):
            await worker.heartbeat_once()
        assert [p.id for p in await live_processes(worker_db, 2 * lease)] == [worker.process.id]
        assert "registered again" in caplog.text


async def test_a_listener_that_fails_does_not_stop_the_others_being_told(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(Recorder):
        async def job_interrupted(self, job: Job) -> None:
            await super().job_interrupted(job)
            if len(self.of("interrupted")) == 1:
                raise RuntimeError("Discord is down")

    async with databases(postgres_url, 1) as (sessions,), AsyncExitStack() as stack:
        jobs = [await admitted(sessions, user=1) for _ in range(3)]
        for job in jobs:
            await claimed(sessions, job, "dead-worker", lease_left=-1)
        flaky = Flaky()
        reaper = await started(stack, Leases(sessions, ProcessInfo("gateway"), LONG), flaky)
        reaped = await reaper.reap_once()
        assert [job.id for job in reaped] == [job.id for job in jobs]
        assert flaky.of("interrupted") == [job.id for job in jobs]
        assert "reporting the interruption failed" in caplog.text
        assert {row.status for row in (await rows(sessions)).values()} == {JobStatus.INTERRUPTED}


async def test_the_runner_on_postgresql_registers_its_process_and_leaves_at_close(
    postgres_url: str, fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    settings = make_settings(fake_images_api, tmp_path, database=DatabaseSettings(url=postgres_url))
    async with databases(postgres_url, 1) as (sessions,), open_engine(settings) as engine:
        process = ProcessInfo("worker")
        runner = JobRunner(
            engine, sessions, settings, prices=build_catalogues(settings).prices, process=process
        )
        assert runner.leases is not None
        runner.set_listener(Recorder())
        await runner.start()
        try:
            alive = await live_processes(sessions, timedelta(seconds=LONG))
            assert [(p.id, p.role) for p in alive] == [(process.id, "worker")]
        finally:
            await runner.close()
        assert await live_processes(sessions, timedelta(seconds=LONG)) == []


async def test_a_claim_given_back_is_queued_again_at_its_turn_and_only_by_its_holder(
    postgres_url: str,
) -> None:
    async with databases(postgres_url, 1) as (sessions,):
        job = await admitted(sessions, user=1)
        async with sessions() as session, session.begin():
            await session.execute(update(Job).where(Job.id == job.id).values(fair_round=7))
        await claimed(sessions, job, "worker-a", lease_left=LONG)

        async with sessions() as session, session.begin():
            assert not await release_claim(session, job.id, "worker-b")  # not its claim
            assert await release_claim(session, job.id, "worker-a")
            assert not await release_claim(session, job.id, "worker-a")  # given back once
        row = (await rows(sessions))[job.id]
        assert (row.status, row.worker_id, row.lease_until, row.started_at) == (
            JobStatus.QUEUED,
            None,
            None,
            None,
        )
        assert (row.fair_round, row.n_charged) == (7, 1)  # its turn and its reservation kept

        # Cancelled meanwhile: not queued again (whoever holds it records the cancel).
        await claimed(sessions, job, "worker-a", lease_left=LONG)
        async with sessions() as session, session.begin():
            await session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
            assert not await release_claim(session, job.id, "worker-a")
        assert (await rows(sessions))[job.id].status is JobStatus.RUNNING


async def test_a_bot_process_on_postgresql_beats_while_it_runs_and_leaves_on_sigterm(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    postgres_url: str,
) -> None:
    """``python -m bot run`` as the operator starts it: `check` can see it while it runs."""
    config = write_config(tmp_path, fake_discord, fake_images_api, jobs_extra="lease_seconds = 5\n")
    env = bot_env(fake_discord.token, fake_images_api.api_key) | {"DATABASE_URL": postgres_url}
    async with (
        databases(postgres_url, 1) as (sessions,),
        bot_process("run", config, env) as bot,
    ):
        try:
            await fake_discord.wait_ready(timeout=15)
            # Registered before the gateway connects (the runner starts in setup_hook).
            ((process,),) = (await live_processes(sessions, timedelta(seconds=10)),)
            assert (process.role, process.pid) == ("both", bot.process.pid)
            first_beat = process.heartbeat_at
            await asyncio.sleep(2.5)  # a heartbeat every 1.25 s
            ((process,),) = (await live_processes(sessions, timedelta(seconds=10)),)
            assert process.heartbeat_at > first_beat
        except BaseException:
            print(bot.output)
            raise
        assert await bot.stop() == 0, bot.output
        assert await live_processes(sessions, timedelta(days=1)) == []
    assert "Traceback" not in bot.output


async def test_a_late_failure_after_the_reaper_interrupted_the_job_changes_nothing(
    postgres_url: str,
) -> None:
    """The worker's lease ran out (a stalled machine) and its job was reported interrupted,
    possibly billed; its provider's error arriving afterwards must neither tell the member a
    second time nor give the possibly billed estimate back to the spend ledger."""
    async with databases(postgres_url, 2) as (worker_db, gateway_db), AsyncExitStack() as stack:
        job = await admitted(worker_db, user=1, n=2)
        await claimed(worker_db, job, "stalled-worker", lease_left=-1)
        told = Recorder()
        reaper = await started(stack, Leases(gateway_db, ProcessInfo("gateway"), LONG), told)
        assert [reaped.id for reaped in await reaper.reap_once()] == [job.id]
        usage = await member_usage(worker_db, ROOMY_QUOTAS, GUILD, 1)

        late = await store.record_failure(
            worker_db, job.id, ProviderUnavailable(), possibly_billed=False
        )

        assert late is None  # nobody to tell: the requester heard "interrupted" already
        row = (await rows(worker_db))[job.id]
        assert (row.status, row.error_code) == (JobStatus.INTERRUPTED, "interrupted")
        assert (row.possibly_billed, row.cost_micro_usd) == (True, 2 * PRICE)
        assert await member_usage(worker_db, ROOMY_QUOTAS, GUILD, 1) == usage
        async with worker_db() as session:
            now = utcnow()
            assert await counted(session, GUILD, 1, now) == await summed(session, GUILD, 1, now)
