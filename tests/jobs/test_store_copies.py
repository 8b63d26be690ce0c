"""A result posted again (``/show``): its messages are added after the original's, so the
buttons and reactions on every copy find the job, and Delete removes them all. Rows in a real
SQLite file and a real PostgreSQL database, as the bot writes them.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from bot.db.models import Job, JobMessage, JobStatus
from bot.generation import ImageOrder
from bot.jobs import store
from bot.providers import Operation
from tests.jobs.test_runner import ROOMY, World, origin


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    """What the store writes and reads, on SQLite and on PostgreSQL."""
    return world_on_each_engine


async def delivered(world: World, messages: list[tuple[int | None, int]]) -> Job:
    order = ImageOrder(Operation.GENERATE, prompt="a kite", size="256x256")
    job = store.new_job(order, origin(1), "dall-e-2", 0, "imagine")
    await store.admit(world.storage.transactions, ROOMY, job)
    await store.record_delivery(world.storage.sessions, job.id, messages)
    return job


async def test_copies_follow_the_original_and_find_the_job(world: World) -> None:
    sessions = world.storage.sessions
    job = await delivered(world, [(10, 100), (10, 101)])  # a result in two parts

    assert await store.add_result_messages(sessions, job.id, [(20, 200), (20, 201)])
    assert await store.add_result_messages(sessions, job.id, [(30, 300)])

    assert await store.messages_of(sessions, job) == [
        (10, 100),
        (10, 101),
        (20, 200),
        (20, 201),
        (30, 300),
    ]
    for message_id in (100, 201, 300):
        found = await store.job_for_message(sessions, message_id)
        assert found is not None and found.id == job.id
    again = await store.get_job(sessions, job.id)
    assert again is not None and again.result_message_id == 100  # the original stays first


async def test_two_copies_at_once_take_different_positions(world: World) -> None:
    sessions = world.storage.sessions
    job = await delivered(world, [(10, 100)])

    done = await asyncio.gather(
        store.add_result_messages(sessions, job.id, [(20, 200)]),
        store.add_result_messages(sessions, job.id, [(30, 300)]),
    )

    assert done == [True, True]
    ids = [message_id for _, message_id in await store.messages_of(sessions, job)]
    assert ids[0] == 100 and sorted(ids[1:]) == [200, 300]


async def test_a_result_recorded_without_its_messages_keeps_its_first_one(world: World) -> None:
    """Delivered before every part was recorded: the job's own result message counts as the
    first, so Delete on the copy still removes the original too."""
    sessions = world.storage.sessions
    job = await delivered(world, [(10, 100)])
    async with sessions() as session, session.begin():
        await session.execute(JobMessage.__table__.delete().where(JobMessage.job_id == job.id))

    assert await store.add_result_messages(sessions, job.id, [(20, 200)])

    assert await store.messages_of(sessions, job) == [(10, 100), (20, 200)]


async def test_a_deleted_or_unfinished_result_gets_no_copy(world: World) -> None:
    sessions = world.storage.sessions
    job = await delivered(world, [(10, 100)])
    await store.forget_result(sessions, job.id)

    assert not await store.add_result_messages(sessions, job.id, [(20, 200)])
    assert await store.job_for_message(sessions, 200) is None

    other = await delivered(world, [(10, 110)])
    async with sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == other.id).values(status=JobStatus.FAILED))
    assert not await store.add_result_messages(sessions, other.id, [(20, 210)])
    assert not await store.add_result_messages(sessions, 999_999, [(20, 220)])
