"""Stored data has a lifecycle: what a job keeps, for how long, and the space given back.

The runner and the real engine against the fake image API, on a SQLite file and on PostgreSQL
(the file's own space on SQLite only), as in test_runner.py; jobs in states that take days
to reach are written as rows.
"""

from __future__ import annotations

import io
import os
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.app import open_storage
from bot.config import DatabaseSettings, Settings
from bot.db.engine import Storage
from bot.db.models import ImageRole, Intake, Job, JobImage, JobStatus, utcnow
from bot.generation import ImageOrder
from bot.jobs import store
from bot.providers import Operation
from bot.testing.images import noise_png
from bot.testing.openai_api import FakeImagesAPI
from tests.jobs.test_runner import World, make_settings, open_world, order, origin, until


def sqlite_settings(api: FakeImagesAPI, folder: Path) -> Settings:
    """Settings on ``folder/bot.db`` whichever engine the suite runs on."""
    return make_settings(
        api, folder, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{folder / 'bot.db'}")
    )


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    """What the store writes and reads, on SQLite and on PostgreSQL."""
    return world_on_each_engine


DAY = timedelta(days=1)
RETENTION = timedelta(days=30)


async def prune(storage: Storage, retention: timedelta) -> Any:
    """One retention pass (imported here: the tests of what a job keeps run without it)."""
    from bot.jobs.retention import prune as prune_pass

    return await prune_pass(storage, retention)


def vary_order(image: bytes) -> ImageOrder:
    return ImageOrder(Operation.VARY, image=image, size="256x256")


async def stored(storage: Storage, job_id: int) -> dict[ImageRole, list[bytes]]:
    async with storage.sessions() as session:
        rows = await session.execute(
            select(JobImage.role, JobImage.data).where(JobImage.job_id == job_id)
        )
        found: dict[ImageRole, list[bytes]] = {}
        for role, data in rows.all():
            found.setdefault(role, []).append(data)
        return found


async def add_job(
    storage: Storage,
    status: JobStatus,
    age: timedelta,
    *,
    images: int = 2,
    image_bytes: int = 1000,
    token_age: timedelta | None = None,
) -> int:
    """A job that finished ``age`` ago (queued then too) with ``images`` stored images."""
    now = utcnow()
    job = store.new_job(
        ImageOrder(Operation.EDIT, prompt="a kite", image=b"x"), origin(1), "dall-e-2", 0, "edit"
    )
    job.status = status
    job.queued_at = now - age
    job.finished_at = None if status in (JobStatus.QUEUED, JobStatus.RUNNING) else now - age
    if token_age is not None:
        job.application_id, job.interaction_token = 42, f"token-{status}-{age}"
        job.interaction_at = now - token_age
    async with storage.sessions() as session, session.begin():
        session.add(job)
        await session.flush()
        roles = [ImageRole.INPUT, ImageRole.MASK, ImageRole.OUTPUT]
        for position in range(images):
            session.add(
                JobImage(
                    job_id=job.id,
                    role=roles[position % 3],
                    position=position,
                    mime_type="image/png",
                    data=os.urandom(image_bytes),
                )
            )
    return job.id


async def image_count(storage: Storage) -> int:
    async with storage.sessions() as session:
        return int((await session.execute(select(func.count(JobImage.id)))).scalar_one())


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# --- what a job keeps --------------------------------------------------------------------------


async def test_after_a_job_ran_the_database_holds_what_was_sent_not_the_raw_upload(
    world: World,
) -> None:
    upload = noise_png(2000)
    assert len(upload) > 12_000_000
    runner, recorder = await world.runner()
    job = await runner.submit(vary_order(upload), origin(1), command="vary")
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()  # the result (and what was sent) is recorded once it is posted

    (kept,) = (await stored(world.storage, job.id))[ImageRole.INPUT]
    assert len(kept) < 4 * 1024 * 1024
    with Image.open(io.BytesIO(kept)) as image:
        assert image.format == "PNG" and image.size == (256, 256)
    (request,) = world.api.requests
    sent = request.file("image")
    assert sent is not None and sent.data == kept  # exactly what the provider got
    async with world.storage.sessions() as session:
        total = (await session.execute(select(func.sum(func.length(JobImage.data))))).scalar()
    assert total is not None and total < 4 * 1024 * 1024


async def test_running_a_kept_input_again_sends_the_same_request(world: World) -> None:
    """What Redo, Remix and Retry rely on: the kept input normalizes to itself."""
    photo = noise_png(700)
    runner, recorder = await world.runner()
    first = await runner.submit(vary_order(photo), origin(1), command="vary")
    await recorder.wait_for("succeeded", 1)
    await runner.wait_idle()
    again = await store.order_of(world.storage.sessions, await world.job(first.id))
    await runner.submit(again, origin(1), command="redo")
    await recorder.wait_for("succeeded", 2)
    sent_1, sent_2 = (r.file("image") for r in world.api.requests)
    assert sent_1 is not None and sent_2 is not None
    assert sent_1.data == sent_2.data
    assert world.api.requests[0].body["size"] == world.api.requests[1].body["size"]


async def test_failed_and_cancelled_jobs_drop_their_uploads_at_once(world: World) -> None:
    runner, recorder = await world.runner()
    world.api.safety_next()
    failed = await runner.submit(vary_order(noise_png(300)), origin(1), command="vary")
    await recorder.wait_for("failed", 1)
    assert await stored(world.storage, failed.id) == {}
    assert (await world.job(failed.id)).pruned_at is not None

    world.api.delay = 0.5
    await runner.submit(order("a slow one"), origin(2), command="imagine")
    await until(lambda: bool(runner.dispatcher.running))
    waiting = await runner.submit(vary_order(noise_png(300)), origin(2), command="vary")
    assert ImageRole.INPUT in await stored(world.storage, waiting.id)
    assert await runner.cancel(waiting.id)
    assert await stored(world.storage, waiting.id) == {}
    cancelled = await world.job(waiting.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.pruned_at is not None


async def test_an_interrupted_job_keeps_its_upload_for_its_retry_button(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    settings = make_settings(fake_images_api, tmp_path)
    async with open_world(fake_images_api, settings) as world:
        upload = noise_png(300)
        runner, _ = await world.runner(start=False)
        job = await runner.submit(vary_order(upload), origin(1), command="vary")
        await store.mark_running(world.storage.sessions, job.id)  # killed while it ran
    async with open_world(fake_images_api, settings) as world:
        _, recorder = await world.runner()
        await recorder.wait_for("interrupted", 1)
        assert (await world.job(job.id)).status is JobStatus.INTERRUPTED
        assert (await stored(world.storage, job.id))[ImageRole.INPUT] == [upload]
        await prune(world.storage, RETENTION)
        assert (await stored(world.storage, job.id))[ImageRole.INPUT] == [upload]


# --- pruning -----------------------------------------------------------------------------------


async def test_prune_removes_exactly_what_nothing_needs_any_more(world: World) -> None:
    storage = world.storage
    gone = {
        "delivered 31 days ago": await add_job(storage, JobStatus.DELIVERED, 31 * DAY),
        "failed just now": await add_job(storage, JobStatus.FAILED, timedelta(0)),
        "cancelled just now": await add_job(storage, JobStatus.CANCELLED, timedelta(0)),
        "interrupted 31 days ago": await add_job(storage, JobStatus.INTERRUPTED, 31 * DAY),
    }
    kept = {
        "delivered 29 days ago": await add_job(storage, JobStatus.DELIVERED, 29 * DAY),
        "interrupted yesterday": await add_job(storage, JobStatus.INTERRUPTED, DAY),
        "queued 40 days ago": await add_job(storage, JobStatus.QUEUED, 40 * DAY),
        "running 40 days ago": await add_job(storage, JobStatus.RUNNING, 40 * DAY),
        "made 40 days ago, not posted yet": await add_job(storage, JobStatus.SUCCEEDED, 40 * DAY),
    }

    pruned = await prune(storage, RETENTION)

    assert (pruned.jobs, pruned.images, pruned.bytes, pruned.tokens) == (4, 8, 8000, 0)
    for name, job_id in gone.items():
        job = await world.job(job_id)
        assert await stored(storage, job_id) == {}, name
        assert job.pruned_at is not None, name
    for name, job_id in kept.items():
        job = await world.job(job_id)
        kept_images = await stored(storage, job_id)
        assert sum(len(images) for images in kept_images.values()) == 2, name
        assert job.pruned_at is None, name
    async with storage.sessions() as session:  # the ledger keeps every job
        assert (await session.execute(select(func.count(Job.id)))).scalar_one() == 9
    assert (await prune(storage, RETENTION)).images == 0  # nothing left to do


async def test_prune_clears_interaction_tokens_discord_no_longer_accepts(world: World) -> None:
    storage = world.storage
    stale = await add_job(storage, JobStatus.QUEUED, timedelta(0), token_age=timedelta(minutes=16))
    live = await add_job(storage, JobStatus.QUEUED, timedelta(0), token_age=timedelta(minutes=5))
    async with storage.sessions() as session, session.begin():
        session.add(
            Intake(
                interaction_id=7,
                application_id=42,
                interaction_token="intake-token",
                interaction_at=utcnow() - timedelta(hours=1),
                user_id=1,
                command="imagine",
                request="{}",
            )
        )
    pruned = await prune(storage, RETENTION)
    assert pruned.tokens == 2
    assert (await world.job(stale)).interaction_token is None
    assert (await world.job(live)).interaction_token is not None
    async with storage.sessions() as session:
        intake = (await session.execute(select(Intake))).scalar_one()
    assert intake.interaction_token is None


async def test_the_sqlite_database_file_shrinks_after_a_prune(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    """PostgreSQL's autovacuum reuses the space itself; a SQLite file must give it back."""
    async with open_world(fake_images_api, sqlite_settings(fake_images_api, tmp_path)) as opened:
        await shrinks_after_a_prune(opened.storage)


async def shrinks_after_a_prune(storage: Storage) -> None:
    for _ in range(6):
        await add_job(storage, JobStatus.DELIVERED, 40 * DAY, images=2, image_bytes=1_000_000)
    async with storage.engine.connect() as connection:
        await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(storage.engine.url.database or "")
    before = file_bytes(path)
    assert before > 12_000_000

    pruned = await prune(storage, RETENTION)

    assert pruned.images == 12 and await image_count(storage) == 0
    after = file_bytes(path)
    assert after < before - 11_000_000, (before, after)


async def test_an_existing_sqlite_database_is_converted_to_incremental_vacuum_once(
    fake_images_api: FakeImagesAPI, tmp_path: Path
) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as connection:  # as older versions left it: no auto_vacuum
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE leftover (id INTEGER PRIMARY KEY)")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA auto_vacuum").fetchone() == (0,)

    async with open_storage(sqlite_settings(fake_images_api, tmp_path)):
        pass

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental


@pytest.mark.parametrize("days", [1, 7])
async def test_the_retention_is_the_operators_choice(world: World, days: int) -> None:
    storage = world.storage
    job_id = await add_job(storage, JobStatus.DELIVERED, 3 * DAY)
    await prune(storage, timedelta(days=days))
    assert (await stored(storage, job_id) == {}) is (days < 3)
