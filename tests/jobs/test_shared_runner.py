"""The shared queue on PostgreSQL: several job runners, each its own "process" (its own engine
and process id), on one database, against the fake image APIs.

What a member would notice: every job runs once and its result is posted once, whichever
process took the request and whichever runs it; Cancel works from any process; the place in
line is the place in the one queue; the caps count every process's jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from bot.app import build_catalogues
from bot.config import DatabaseSettings, JobsSettings, ProviderSettings, Settings
from bot.db.engine import Transactions
from bot.db.models import Intake, Job, JobStatus, utcnow
from bot.generation import ImageOrder
from bot.jobs import JobRunner, store
from bot.jobs.intake import IntakeBook
from bot.jobs.processes import ProcessInfo
from bot.jobs.shared import recover_intakes
from bot.providers import Operation
from bot.quotas.policy import GuildQueueFull, QueueFull
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.harness import a1111_backend
from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import (
    GUILD_A,
    GUILD_B,
    PRICE,
    Recorder,
    World,
    make_settings,
    open_world,
    origin,
    submit,
    until,
)

#: Where the recorders "post" results (message id 1000 + job id).
CHANNEL = 77


def shared_settings(api: FakeImagesAPI, tmp_path: Path, url: str, **changes: Any) -> Settings:
    jobs = JobsSettings(
        concurrency=2, max_queued_per_member=100, max_queued_per_guild=100, poll_seconds=0.5
    )
    return make_settings(api, tmp_path, database=DatabaseSettings(url=url), jobs=jobs, **changes)


class Processes:
    """Runners on one PostgreSQL database, each with its own engine: separate processes."""

    def __init__(self, stack: AsyncExitStack, api: FakeImagesAPI, settings: Settings) -> None:
        self.stack, self.api, self.settings = stack, api, settings
        self.first: World | None = None

    async def world(self) -> World:
        world = await self.stack.enter_async_context(open_world(self.api, self.settings))
        self.first = self.first or world
        return world

    async def runner(
        self, role: str = "both", *, start: bool = True, **jobs: Any
    ) -> tuple[JobRunner, Recorder]:
        world = await self.world()
        settings = dataclasses.replace(
            world.settings, jobs=dataclasses.replace(world.settings.jobs, **jobs)
        )
        runner = JobRunner(
            world.engine,
            world.storage.sessions,
            settings,
            prices=build_catalogues(settings).prices,
            process=ProcessInfo(role=role),
        )
        recorder = Recorder(post_to=CHANNEL)
        runner.set_listener(recorder)
        world.stack.push_async_callback(runner.close)
        if start:
            await runner.start()
        assert runner.shared is not None  # PostgreSQL: the queue is the database's
        return runner, recorder

    async def jobs(self) -> list[Job]:
        assert self.first is not None
        return await self.first.jobs()


@pytest.fixture
async def processes(
    fake_images_api: FakeImagesAPI, tmp_path: Path, postgres_url: str
) -> AsyncIterator[Processes]:
    async with AsyncExitStack() as stack:
        yield Processes(
            stack, fake_images_api, shared_settings(fake_images_api, tmp_path, postgres_url)
        )
    assert fake_images_api.spec_violations == []


def posted(*recorders: Recorder) -> list[int]:
    return sorted(job_id for recorder in recorders for job_id in recorder.of("succeeded"))


# --- one queue, each job once -------------------------------------------------------------------


async def test_two_processes_share_one_queue_and_run_and_post_each_job_once(
    processes: Processes,
) -> None:
    api = processes.api
    api.delay = 0.2
    a, a_told = await processes.runner()
    b, b_told = await processes.runner()
    jobs = []
    for i in range(12):
        runner = a if i % 2 else b
        jobs.append(await submit(runner, f"p{i}", user=i % 3, guild=GUILD_A + i % 4))
    await a.wait_idle()
    await until(lambda: len(a_told.of("recorded")) + len(b_told.of("recorded")) == 12)
    ids = sorted(job.id for job in jobs)
    assert posted(a_told, b_told) == ids  # each posted once, by one of them
    assert sorted(str(r.body["prompt"]) for r in api.requests) == sorted(f"p{i}" for i in range(12))
    rows = await processes.jobs()
    assert {row.status for row in rows} == {JobStatus.DELIVERED}
    assert all(row.delivery_owner == row.worker_id for row in rows)  # its runner posted it
    assert {row.worker_id for row in rows} == {a.process.id, b.process.id}  # both worked
    ran_here = {
        a.process.id: set(a_told.of("succeeded")),
        b.process.id: set(b_told.of("succeeded")),
    }
    assert all(row.id in ran_here[row.worker_id] for row in rows)
    assert sum(row.n_charged for row in rows) == 12
    assert sum(row.cost_micro_usd for row in rows) == 12 * PRICE
    assert all(row.result_message_id == 1000 + row.id for row in rows)
    assert all(row.interaction_token is None for row in rows)


async def test_a_gateway_queues_shows_places_from_the_database_and_a_worker_runs(
    processes: Processes,
) -> None:
    gateway, told = await processes.runner("gateway")
    other_gateway, _ = await processes.runner("gateway")
    first = await submit(gateway, "first", user=1)
    second = await submit(other_gateway, "second", user=2)
    third = await submit(gateway, "third", user=3)
    await asyncio.sleep(0.8)  # more than a poll: still nobody runs jobs
    assert processes.api.requests == []
    places = await gateway.places([first.id, second.id, third.id])
    assert [places[job.id].position for job in (first, second, third)] == [1, 2, 3]
    etas = [places[job.id].eta_seconds for job in (first, second, third)]
    assert etas == sorted(etas) and etas[0] > 0
    assert (await other_gateway.places([third.id]))[third.id].position == 3  # one queue
    assert [told.detail("queued", job.id).position for job in (first, third)] == [1, 3]

    worker, worked = await processes.runner("worker")
    await worker.wait_idle()
    await worked.wait_for("recorded", 3)
    assert sorted(worked.of("succeeded")) == [first.id, second.id, third.id]
    # The worker took over each job's status: "working" (no place), then the result.
    assert all(worked.detail("queued", job.id) is None for job in (first, second, third))
    assert told.of("succeeded") == []
    assert await gateway.places([first.id]) == {}  # no longer waiting


async def test_jobs_queued_on_two_processes_run_in_one_fair_order(processes: Processes) -> None:
    """Round-robin between guilds, then members, over the jobs every process queued."""
    one, _ = await processes.runner("gateway")
    two, _ = await processes.runner("gateway")
    plan = [
        ("x1", 1, GUILD_A),
        ("x2", 1, GUILD_A),
        ("y1", 2, GUILD_A),
        ("z1", 3, GUILD_B),
        ("z2", 3, GUILD_B),
        ("x3", 1, GUILD_A),
    ]
    for i, (prompt, user, guild) in enumerate(plan):
        await submit(one if i % 2 else two, prompt, user, guild)
    worker, worked = await processes.runner("worker", concurrency=1)
    await worker.wait_idle()
    assert [r.body["prompt"] for r in processes.api.requests] == [
        "x1", "z1", "y1", "z2", "x2", "x3"
    ]  # fmt: skip
    assert len(worked.of("succeeded")) == 6


async def test_queue_caps_count_the_jobs_every_process_queued(processes: Processes) -> None:
    one, _ = await processes.runner("gateway", max_queued_per_member=2, max_queued_per_guild=3)
    two, _ = await processes.runner("gateway", max_queued_per_member=2, max_queued_per_guild=3)
    await submit(one, "a", user=1)
    await submit(two, "b", user=1)
    with pytest.raises(QueueFull):
        await submit(two, "c", user=1)
    await submit(one, "d", user=2)
    with pytest.raises(GuildQueueFull):
        await submit(two, "e", user=3)
    await submit(two, "f", user=3, guild=GUILD_B)
    assert len(await processes.jobs()) == 4  # refused requests leave nothing behind


async def test_concurrent_requests_on_two_processes_do_not_slip_past_the_cap(
    processes: Processes,
) -> None:
    one, _ = await processes.runner("gateway", max_queued_per_member=3)
    two, _ = await processes.runner("gateway", max_queued_per_member=3)

    async def attempt(i: int) -> bool:
        try:
            await submit(one if i % 2 else two, f"burst {i}", user=1)
        except QueueFull:
            return False
        return True

    admitted = await asyncio.gather(*(attempt(i) for i in range(12)))
    assert sum(admitted) == 3
    assert len(await processes.jobs()) == 3


async def test_a_queued_job_wakes_a_worker_at_once_without_waiting_for_the_poll(
    processes: Processes,
) -> None:
    _, worked = await processes.runner("worker", poll_seconds=300)
    gateway, _ = await processes.runner("gateway", poll_seconds=300)
    await asyncio.sleep(0.3)  # the worker found the queue empty and sleeps
    job = await submit(gateway, "wake up")
    await worked.wait_for("recorded", 1, timeout=3)
    assert worked.of("succeeded") == [job.id]


async def test_a_dropped_notification_connection_comes_back(processes: Processes) -> None:
    worker, worked = await processes.runner("worker", poll_seconds=300)
    gateway, _ = await processes.runner("gateway", poll_seconds=300)
    assert processes.first is not None
    async with processes.first.storage.engine.begin() as connection:
        dropped = await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        )
        assert len(dropped.all()) == 2  # the worker's and the gateway's
    assert worker.shared is not None
    shared = worker.shared
    await until(lambda: shared._listener is not None and shared._listener.connected)
    await asyncio.sleep(2.5)  # connected again (RECONNECT_SECONDS)
    job = await submit(gateway, "after the drop")
    await worked.wait_for("recorded", 1, timeout=3)
    assert worked.of("succeeded") == [job.id]


async def test_the_poll_finds_a_job_whose_wake_up_was_lost(processes: Processes) -> None:
    worker, worked = await processes.runner("worker", poll_seconds=0.5)
    assert worker.shared is not None and worker.shared._listener is not None
    await worker.shared._listener.close()  # no notification reaches it any more
    gateway, _ = await processes.runner("gateway")
    job = await submit(gateway, "found by the poll")
    await worked.wait_for("recorded", 1, timeout=3)
    assert worked.of("succeeded") == [job.id]


# --- cancel from any process --------------------------------------------------------------------


async def test_cancel_on_one_process_stops_a_job_queued_by_another(processes: Processes) -> None:
    gateway, _ = await processes.runner("gateway")
    other, _ = await processes.runner("gateway")
    job = await submit(gateway, "never mind")
    assert await other.cancel(job.id) is True
    assert await other.cancel(job.id) is False  # once
    worker, worked = await processes.runner("worker")
    await asyncio.sleep(0.8)
    await worker.wait_idle()
    assert processes.api.requests == []
    (row,) = await processes.jobs()
    assert row.status is JobStatus.CANCELLED
    assert (row.n_charged, row.cost_micro_usd, row.possibly_billed) == (0, 0, False)
    assert worked.events == []


async def test_a_cancel_racing_the_claims_wins_or_loses_never_both(processes: Processes) -> None:
    api = processes.api
    api.delay = 0.05
    gateway, _ = await processes.runner("gateway")
    jobs = [await submit(gateway, f"race {i}", user=i) for i in range(16)]
    worker, worked = await processes.runner("worker", concurrency=4)
    won = await asyncio.gather(*(gateway.cancel(job.id) for job in jobs))
    await worker.wait_idle()
    cancelled = {job.id for job, ok in zip(jobs, won, strict=True) if ok}
    rows = {row.id: row for row in await processes.jobs()}
    ran = {int(str(r.body["prompt"]).split()[1]) for r in api.requests}
    for i, job in enumerate(jobs):
        if job.id in cancelled:
            assert rows[job.id].status is JobStatus.CANCELLED and i not in ran
        else:
            assert rows[job.id].status is JobStatus.DELIVERED and i in ran
    assert set(worked.of("succeeded")) == set(rows) - cancelled


@pytest.mark.parametrize("wake_up", ["notified", "lost"])
async def test_a_running_job_stops_when_cancel_is_pressed_on_another_process(
    fake_images_api: FakeImagesAPI, tmp_path: Path, postgres_url: str, wake_up: str
) -> None:
    """``lost``: the worker hears no notification; its poll finds the Cancel in time."""
    async with (
        FakeAutomatic1111(step_delay=0.1) as a1111,
        AsyncExitStack() as stack,
    ):
        settings = shared_settings(
            fake_images_api,
            tmp_path,
            postgres_url,
            provider=ProviderSettings(**a1111_backend(a1111)),
        )
        processes = Processes(stack, fake_images_api, settings)
        worker, worked = await processes.runner("worker")
        gateway, told = await processes.runner("gateway")
        sunrise = ImageOrder(Operation.GENERATE, prompt="a slow sunrise")
        job = await gateway.submit(sunrise, origin(1), command="imagine")
        task = await a1111.wait_running(step=2)
        if wake_up == "lost":
            assert worker.shared is not None and worker.shared._listener is not None
            await worker.shared._listener.close()
        assert await gateway.cancel(job.id) is True  # answered once it is recorded
        (row,) = await processes.jobs()
        assert row.status is JobStatus.CANCELLED
        assert (row.n_charged, row.cost_micro_usd, row.possibly_billed) == (0, 0, False)
        assert worked.of("cancelled") == [job.id]  # its status said so there, first
        await until(lambda: a1111.interrupts == [task])
        await worker.wait_idle()
        assert worked.of("succeeded") == [] and told.of("succeeded") == []


async def test_a_running_job_whose_backend_cannot_stop_is_not_cancelled(
    processes: Processes,
) -> None:
    api = processes.api
    api.delay = 1.0
    _, worked = await processes.runner("worker")
    gateway, _ = await processes.runner("gateway")
    job = await submit(gateway, "the API bills it anyway")
    await until(lambda: len(api.requests) == 1)
    assert await gateway.cancel(job.id) is False
    await worked.wait_for("recorded", 1)
    assert worked.of("succeeded") == [job.id]


# --- results posted once ------------------------------------------------------------------------


async def test_a_result_that_comes_after_the_claim_ended_is_not_posted(
    processes: Processes,
) -> None:
    """The job's lease ran out meanwhile and another process interrupted it (its requester
    was told, with a Retry button): the late result is not posted as well."""
    api = processes.api
    api.delay = 1.0
    worker, worked = await processes.runner("worker")
    job = await submit(worker, "too late")
    await until(lambda: len(api.requests) == 1)
    assert processes.first is not None
    async with processes.first.storage.sessions() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job.id).values(status=JobStatus.INTERRUPTED)
        )
    await until(lambda: not worker.shared or not worker.shared.running, timeout=5)
    assert worked.of("succeeded") == []
    (row,) = await processes.jobs()
    assert row.status is JobStatus.INTERRUPTED and row.delivery_owner is None


async def test_a_result_no_route_took_is_kept_in_the_row_for_its_owner(
    processes: Processes,
) -> None:
    worker, worked = await processes.runner("worker")
    worked.post_to = None  # Discord took nothing
    job = await submit(worker, "kept")
    await worked.wait_for("succeeded", 1)
    await worker.wait_idle()
    (row,) = await processes.jobs()
    assert row.status is JobStatus.SUCCEEDED and row.delivery_owner == worker.process.id
    assert processes.first is not None
    assert len(await store.outputs_of(processes.first.storage.sessions, job.id)) == 1
    # A runner that starts later does not post it again (at most once).
    _, late_told = await processes.runner("worker")
    await asyncio.sleep(0.8)
    assert late_told.events == []


# --- left-over intakes --------------------------------------------------------------------------


@dataclasses.dataclass
class CountingRecovery:
    finished: list[int] = dataclasses.field(default_factory=list)
    sessions: Any = None

    async def intake_pending(self, intake: Intake) -> None:
        self.finished.append(intake.id)
        await asyncio.sleep(0.2)  # two processes at once would both be here now
        await IntakeBook(Transactions(self.sessions)).drop(intake.id)


async def test_left_over_intakes_are_finished_by_one_process_only(processes: Processes) -> None:
    one, two = await processes.world(), await processes.world()
    async with one.storage.sessions() as session, session.begin():
        for number, age in ((1, timedelta(hours=1)), (2, timedelta(hours=1)), (3, timedelta())):
            session.add(
                Intake(
                    interaction_id=number,
                    interaction_at=utcnow() - age,
                    user_id=1,
                    command="imagine",
                    request="{}",
                )
            )
    first = CountingRecovery(sessions=one.storage.sessions)
    second = CountingRecovery(sessions=two.storage.sessions)
    age = timedelta(minutes=1)
    await asyncio.gather(
        recover_intakes(one.storage.sessions, first, age),
        recover_intakes(two.storage.sessions, second, age),
    )
    assert sorted(first.finished + second.finished) == [1, 2]  # each once; not the new one
    async with one.storage.sessions() as session:
        left = list(await session.scalars(select(Intake.interaction_id)))
    assert left == [3]  # a live process's, about to become a job


async def test_jobs_queued_without_a_place_in_the_shared_queue_run_after_a_start(
    processes: Processes,
) -> None:
    """Jobs queued before migration 0007 (or copied from SQLite by `db copy`) have no lane and
    no fair round: a worker's start gives them one, else no claim would ever find them."""
    gateway, _ = await processes.runner("gateway")
    jobs = [await submit(gateway, f"old{i}", user=i, guild=GUILD_A + i) for i in range(3)]
    world = processes.first
    assert world is not None
    async with world.storage.sessions() as session, session.begin():
        await session.execute(update(Job).values(lane=None, fair_round=None))
    _, told = await processes.runner("worker")
    await until(lambda: len(told.of("recorded")) == 3)
    assert sorted(told.of("succeeded")) == sorted(job.id for job in jobs)
