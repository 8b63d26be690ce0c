"""A blend's pictures are the job's inputs 0..n-1, in the member's order, on SQLite and
PostgreSQL: Redo and Remix (``store.order_of``) and Retry send them again, and keeping what was
sent (``store.keep_sent_inputs``) replaces every one of them."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from bot.db.models import ImageRole, JobImage
from bot.generation import BLEND, ImageOrder
from bot.jobs import store
from bot.providers import Operation
from bot.testing.images import png_bytes
from tests.jobs.test_runner import ROOMY, World, origin


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    return world_on_each_engine


PICTURES = tuple(png_bytes(32, 32, (40 * i, 200 - 30 * i, 90)) for i in range(5))
BLEND_ORDER = ImageOrder(
    Operation.EDIT,
    prompt="one picture of them all",
    image=PICTURES[0],
    extra_images=PICTURES[1:],
    action=BLEND,
)


async def inputs(world: World, job_id: int) -> list[tuple[int, bytes]]:
    async with world.storage.sessions() as session:
        rows = await session.scalars(
            select(JobImage)
            .where(JobImage.job_id == job_id, JobImage.role == ImageRole.INPUT)
            .order_by(JobImage.position)
        )
        return [(row.position, row.data) for row in rows]


async def test_a_blends_pictures_are_stored_in_order_and_read_back(world: World) -> None:
    job = store.new_job(BLEND_ORDER, origin(1), "gpt-image-2", 0, "blend")
    await store.admit(world.storage.transactions, ROOMY, job, order=BLEND_ORDER)

    assert await inputs(world, job.id) == list(enumerate(PICTURES))
    again = await store.order_of(world.storage.sessions, job)
    assert (again.image, again.extra_images) == (PICTURES[0], PICTURES[1:])
    assert again.action == BLEND and again.mask is None


async def test_keeping_what_was_sent_replaces_every_picture(world: World) -> None:
    job = store.new_job(BLEND_ORDER, origin(1), "gpt-image-2", 0, "blend")
    await store.admit(world.storage.transactions, ROOMY, job, order=BLEND_ORDER)
    sent = dataclasses.replace(BLEND_ORDER, image=PICTURES[4], extra_images=PICTURES[:2])

    await store.keep_sent_inputs(world.storage.sessions, job.id, sent)

    assert await inputs(world, job.id) == [(0, PICTURES[4]), (1, PICTURES[0]), (2, PICTURES[1])]


async def test_an_edit_keeps_a_single_input(world: World) -> None:
    edit = ImageOrder(Operation.EDIT, prompt="a door", image=PICTURES[0])
    job = store.new_job(edit, origin(1), "gpt-image-2", 0, "edit")
    await store.admit(world.storage.transactions, ROOMY, job, order=edit)

    again = await store.order_of(world.storage.sessions, job)
    assert (again.image, again.extra_images) == (PICTURES[0], ())
