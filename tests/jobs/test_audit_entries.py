"""The audit outbox gets one entry per job's end, written with the job's record, on SQLite and
PostgreSQL (its shared queue too): delivered, failed, cancelled, interrupted; none for a server
without an audit channel; and of two posters claiming at once each entry goes to one.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from bot.db.models import AuditEntry
from bot.moderation.audit import claim_entry, set_audit_channel
from tests.jobs.test_runner import GUILD_A, GUILD_B, Recorder, World, submit, until

AUDIT_CHANNEL = 555


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    return world_on_each_engine


async def entries(world: World) -> list[AuditEntry]:
    async with world.storage.sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_each_end_of_a_job_writes_one_entry(world: World) -> None:
    await set_audit_channel(world.storage.sessions, GUILD_A, AUDIT_CHANNEL)
    api = world.api
    first, recorder = await world.runner(Recorder(post_to=7), concurrency=1)
    made = await submit(first, "made", user=1, n=2)
    await recorder.wait_for("succeeded", 1)
    elsewhere = await submit(first, "no audit channel", user=1, guild=GUILD_B)
    await recorder.wait_for("succeeded", 2)
    api.fail_next(400, code="invalid_prompt", message="No.")
    failed = await submit(first, "fails", user=2)
    await recorder.wait_for("failed", 1)
    api.delay = 30.0
    cut = await submit(first, "cut short", user=1)
    await until(lambda: len(api.requests) == 4)
    cancelled = await submit(first, "cancelled", user=1)
    assert await first.cancel(cancelled.id)
    await first.close()  # the cut job is interrupted by the restart (or by the stop itself)
    api.delay = 0.0
    second, _ = await world.runner(Recorder(post_to=7), concurrency=1)
    await second.wait_idle()

    found = await entries(world)
    by_job = {entry.job_id: json.loads(entry.body) for entry in found}
    assert elsewhere.id not in by_job
    assert len(found) == len(by_job) == 4  # one each
    assert {entry.channel_id for entry in found} == {AUDIT_CHANNEL}
    assert {entry.guild_id for entry in found} == {GUILD_A}
    delivered = by_job[made.id]
    assert delivered["outcome"] == "delivered" and delivered["prompt"] == "made"
    assert delivered["result_channel_id"] == 7 and delivered["result_message_id"]
    assert delivered["cost_micro_usd"] > 0 and delivered["user_id"] == 1
    assert delivered["command"] == "imagine"
    assert by_job[failed.id]["outcome"] == "failed"
    assert by_job[failed.id]["cost_micro_usd"] == 0
    assert by_job[cancelled.id]["outcome"] == "cancelled"
    assert by_job[cut.id]["outcome"] == "interrupted"
    assert all(entry.posted_at is None and entry.attempts == 0 for entry in found)


async def test_turned_off_no_entries_are_written(world: World) -> None:
    await set_audit_channel(world.storage.sessions, GUILD_A, AUDIT_CHANNEL)
    await set_audit_channel(world.storage.sessions, GUILD_A, None)
    runner, recorder = await world.runner(Recorder(post_to=7))
    await submit(runner, "made")
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()
    assert await entries(world) == []


async def test_two_posters_claiming_at_once_take_different_entries(world: World) -> None:
    await set_audit_channel(world.storage.sessions, GUILD_A, AUDIT_CHANNEL)
    runner, recorder = await world.runner(Recorder(post_to=7))
    await submit(runner, "one")
    await submit(runner, "two")
    await recorder.wait_for("succeeded", 2)
    await runner.wait_idle()
    sessions = world.storage.sessions
    both = asyncio.Event()
    taken: list[int | None] = []

    async def poster(together: bool) -> None:
        async with claim_entry(sessions) as claim:
            taken.append(None if claim is None else claim.entry.id)
            if len(taken) == 2:
                both.set()
            if together:  # both hold their claims at once
                await asyncio.wait_for(both.wait(), 5)
            if claim is not None:
                claim.posted()

    if world.storage.engine.dialect.name == "sqlite":
        await poster(False)  # SQLite: one process, one poster, one claim after the other
        await poster(False)
    else:
        await asyncio.gather(poster(True), poster(True))
    assert len(set(taken)) == 2 and None not in taken
    assert all(entry.posted_at is not None for entry in await entries(world))
