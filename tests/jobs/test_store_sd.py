"""A job keeps its Stable Diffusion options and each image's seed (migration 0006's columns).

Redo, Remix and Retry run ``store.order_of`` again, and a restart finishes an intake from its
JSON: an option lost on the way would make a different picture than the one the member asked
for. Rows in a real SQLite file and a real PostgreSQL database, as the bot writes them.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from bot.db.models import ImageRole, JobImage
from bot.generation import ImageOrder
from bot.jobs import store
from bot.jobs.intake import IntakeRequest, order_options
from bot.providers import GeneratedImage, ImageResult, Operation
from bot.testing.images import png_bytes
from tests.jobs.test_runner import ROOMY, World, origin


@pytest.fixture
def world(world_on_each_engine: World) -> World:
    """What the store writes and reads, on SQLite and on PostgreSQL."""
    return world_on_each_engine


SD_ORDER = ImageOrder(
    Operation.GENERATE,
    prompt="a lighthouse at dusk",
    size="768x512",
    negative_prompt="blurry, text",
    seed=4_294_967_295,
    steps=28,
    guidance=6.5,
    sampler="DPM++ 2M",
    checkpoint="sdxl-base",
)


async def test_a_jobs_sd_options_are_read_back_for_redo(world: World) -> None:
    job = store.new_job(SD_ORDER, origin(1), "automatic1111", 0, "imagine")
    await store.admit(world.storage.transactions, ROOMY, job)

    again = await store.order_of(world.storage.sessions, job)

    assert again.operation is Operation.GENERATE
    for name in ("negative_prompt", "seed", "steps", "guidance", "sampler", "checkpoint"):
        assert getattr(again, name) == getattr(SD_ORDER, name), name


async def test_a_job_without_sd_options_reads_back_as_the_backends_defaults(world: World) -> None:
    plain = ImageOrder(Operation.GENERATE, prompt="a kite", size="256x256")
    job = store.new_job(plain, origin(1), "dall-e-2", 0, "imagine")
    await store.admit(world.storage.transactions, ROOMY, job)

    again = await store.order_of(world.storage.sessions, job)

    assert (again.negative_prompt, again.seed, again.steps, again.sampler) == ("", None, None, None)


def test_an_intake_keeps_the_sd_options_for_a_restart() -> None:
    request = IntakeRequest(order=order_options(SD_ORDER))

    restored = IntakeRequest.from_json(request.to_json()).image_order()

    assert restored == dataclasses.replace(SD_ORDER, user_id=None)


async def test_each_kept_images_seed_is_stored_and_read_back(world: World) -> None:
    job = store.new_job(SD_ORDER, origin(1), "automatic1111", 0, "imagine")
    await store.admit(world.storage.transactions, ROOMY, job)
    picture = png_bytes(64, 64)
    result = ImageResult(
        images=(GeneratedImage(picture, "image/png", 64, 64),) * 2,
        model="automatic1111",
        seeds=(1234, 1235),
    )

    await store.record_success(world.storage.sessions, job.id, result, 0)

    async with world.storage.sessions() as session:
        rows = await session.execute(
            select(JobImage.seed)
            .where(JobImage.job_id == job.id, JobImage.role == ImageRole.OUTPUT)
            .order_by(JobImage.position)
        )
        assert list(rows.scalars()) == [1234, 1235]
    kept = await store.outputs_of(world.storage.sessions, job.id)
    assert [image.seed for image in kept] == [1234, 1235]


async def test_a_posted_result_keeps_each_images_seed_but_not_its_bytes(world: World) -> None:
    """Params shows each image's seed after the result is posted (the message has the bytes)."""
    job = store.new_job(SD_ORDER, origin(1), "automatic1111", 0, "imagine")
    await store.admit(world.storage.transactions, ROOMY, job)
    picture = png_bytes(64, 64)
    images = [GeneratedImage(picture, "image/png", 64, 64, seed=s) for s in (1234, 1235)]
    store.settle(job, ImageResult(images=tuple(images), model="automatic1111"), 0)

    posted = await store.record_result(
        world.storage.transactions, job, images, [(77, 1000)], reserved=(job.n_charged, 0)
    )

    assert posted
    assert await store.seeds_of(world.storage.sessions, job.id) == [1234, 1235]
    assert await store.outputs_of(world.storage.sessions, job.id) == []  # posted: not kept
