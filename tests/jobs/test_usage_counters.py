"""The usage counters the quotas read say what the ledger's rows sum to, after real jobs.

Success (the real cost replaces the estimate), failure (released), cancel (released), and a
job cut off by a stop (possibly billed: its spend stays, its images go), across two guilds and
a restart: the counters and the sums agree, and the quota refuses what the sums would.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.db.models import JobStatus, utcnow
from bot.quotas.policy import GuildBudget
from tests.jobs.test_runner import (
    GUILD_A,
    GUILD_B,
    PRICE,
    Recorder,
    World,
    open_world,
    submit,
    until,
)
from tests.quotas.counting import counted, summed


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    """What the store writes and reads, on SQLite and on PostgreSQL."""
    return world_on_each_engine


async def test_counters_agree_with_the_ledger_after_a_mixed_run(world: World) -> None:
    api = world.api
    first, recorder = await world.runner(Recorder(post_to=7), concurrency=1)
    made = await submit(first, "made", user=1, n=2)
    await recorder.wait_for("succeeded", 1)
    api.fail_next(500)
    failed = await submit(first, "fails", user=2)
    await recorder.wait_for("failed", 1)
    api.delay = 30.0
    cut = await submit(first, "cut short", user=1, guild=GUILD_B)
    await until(lambda: len(api.requests) == 3)
    cancelled = await submit(first, "cancelled", user=1)
    assert await first.cancel(cancelled.id)
    waiting = await submit(first, "waits for the restart", user=2, guild=GUILD_B)
    await first.close()  # the cut job stays running in its row: a restart interrupts it
    api.delay = 0.0

    second, told = await world.runner(Recorder(post_to=7), concurrency=1)
    await told.wait_for("succeeded", 1)
    await second.wait_idle()
    assert told.of("interrupted") == [cut.id]
    outcomes = {
        job.id: (job.status, job.n_charged, job.cost_micro_usd) for job in await world.jobs()
    }
    assert outcomes == {
        made.id: (JobStatus.DELIVERED, 2, 2 * PRICE),
        failed.id: (JobStatus.FAILED, 0, 0),
        cut.id: (JobStatus.INTERRUPTED, 0, PRICE),  # possibly billed: the spend stays
        cancelled.id: (JobStatus.CANCELLED, 0, 0),
        waiting.id: (JobStatus.DELIVERED, 1, PRICE),
    }
    now = utcnow()
    async with world.storage.sessions() as session:
        for guild in (GUILD_A, GUILD_B):
            for user in (1, 2):
                assert await counted(session, guild, user, now) == await summed(
                    session, guild, user, now
                )
        assert (await counted(session, GUILD_A, 1, now))[:4] == (2, 2, 2 * PRICE, 2)
        # guild B: the cut job's possible bill and the resumed job; member 1 made nothing there
        assert (await counted(session, GUILD_B, 1, now))[:4] == (1, 1, 2 * PRICE, 0)
        assert (await counted(session, GUILD_A, 1, now))[4] == 4 * PRICE == world_spend(outcomes)


def world_spend(outcomes: dict[int, tuple[JobStatus, int, int]]) -> int:
    return sum(cost for _, _, cost in outcomes.values())


async def test_the_budget_is_refused_from_the_counters_as_from_the_sums(world: World) -> None:
    """Two images fit a budget of three: the third and fourth do not (reserved, then made)."""
    quotas = dataclasses.replace(world.settings.quotas, spend_per_month_usd=3 * PRICE / 1e6)
    async with open_world(world.api, dataclasses.replace(world.settings, quotas=quotas)) as tight:
        runner, recorder = await tight.runner(Recorder(post_to=7))
        await submit(runner, "one", n=2)
        await recorder.wait_for("succeeded", 1)
        with pytest.raises(GuildBudget) as info:
            await submit(runner, "two more", n=2)
        assert info.value.params["remaining"] == "$0.016"
        await submit(runner, "one more")


async def test_a_result_with_fewer_images_than_reserved_gives_the_difference_back(
    world: World,
) -> None:
    """Three reserved, two made and posted: the member's day counts two, as the ledger does."""
    runner, recorder = await world.runner(Recorder(post_to=7), concurrency=1)
    world.api.misbehave_next(images=2)
    job = await submit(runner, "three asked, two made", user=1, n=3)
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()
    now = utcnow()
    async with world.storage.sessions() as session:
        assert await counted(session, GUILD_A, 1, now) == await summed(session, GUILD_A, 1, now)
        assert (await counted(session, GUILD_A, 1, now))[:3] == (2, 2, 2 * PRICE)
    done = next(j for j in await world.jobs() if j.id == job.id)
    assert (done.status, done.n_charged) == (JobStatus.DELIVERED, 2)
