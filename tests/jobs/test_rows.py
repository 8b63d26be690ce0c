"""The admission's insert (bot.jobs.rows): a Core statement, with what the unit of work did."""

from __future__ import annotations

from sqlalchemy import inspect

from bot.db.engine import Storage
from bot.db.models import Job, JobStatus
from bot.jobs import JobOrigin, store
from bot.testing.harness import ROOMY_QUOTAS
from tests.jobs.test_runner import order

ORIGIN = JobOrigin(user_id=7, guild_id=11, channel_id=5, parent_channel_id=None, role_ids=())


async def test_an_admitted_job_is_stored_as_it_is_held_with_the_columns_defaults(
    storage: Storage,
) -> None:
    job = store.new_job(order("a lighthouse", n=2), ORIGIN, "dall-e-2", 80_000, "imagine")
    await store.admit(storage.transactions, ROOMY_QUOTAS, job)

    # Columns it never set have their defaults (else NULL), on the instance as in the row.
    assert job.id is not None
    assert (job.possibly_billed, job.cancel_requested, job.error_code) == (False, False, None)
    assert job.status is JobStatus.QUEUED and job.n_charged == 2
    state = inspect(job)
    assert state.detached and state.identity == (job.id,)  # as a committed flush leaves it
    async with storage.sessions() as session:
        stored = await session.get(Job, job.id)
    assert stored is not None
    for attribute in Job.__mapper__.column_attrs:
        assert getattr(job, attribute.key) == getattr(stored, attribute.key), attribute.key


async def test_a_change_to_the_admitted_job_is_written_by_a_later_session(
    storage: Storage,
) -> None:
    """The instance is persistent, not new: a later unit of work updates its row."""
    job = store.new_job(order("a lighthouse"), ORIGIN, "dall-e-2", 40_000, "imagine")
    await store.admit(storage.transactions, ROOMY_QUOTAS, job)
    async with storage.sessions() as session, session.begin():
        attached = await session.merge(job)
        attached.error_code = "noted"
    async with storage.sessions() as session:
        stored = await session.get(Job, job.id)
        count = len((await session.execute(Job.__table__.select())).all())
    assert stored is not None and stored.error_code == "noted" and count == 1
