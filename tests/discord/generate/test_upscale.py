"""U1…Un on the OpenAI models: the chosen image redrawn larger, or a refusal naming the limit."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.db.models import Job
from bot.jobs import store
from bot.providers.upscale import UPSCALE_INSTRUCTION
from bot.studio import ActionUnsupported
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    ROOMY_QUOTAS,
    Harness,
    field_value,
    job_id_of,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import colour_of, decode_image
from bot.testing.openai_api import FakeImagesAPI


async def imagine(harness: Harness, n: int, size: str, prompt: str = "a red fox") -> StoredMessage:
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash("imagine", {"prompt": prompt, "count": n, "size": size})
    assert (await handle.response()).ephemeral
    return await new_result(harness, before)


@pytest.fixture
async def gpt_image_2(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(model="gpt-image-2")
    ) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


async def test_u2_redraws_image_2_at_the_largest_size_with_high_fidelity(
    gpt_image_2: Harness,
) -> None:
    harness = gpt_image_2
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=4, size="1024x1024")
    parent = job_id_of(first)
    image_2 = first.files["image_2.png"]
    assert len({colour_of(first.files[f"image_{i}.png"]) for i in range(1, 5)}) == 4

    before = seen_ids(fake)
    click = await fake.click(first, f"ib:act:upscale:{parent}:1", user=fake.admin)
    assert (await click.response()).ephemeral
    result = await new_result(harness, before)

    edit = api.requests[-1]
    assert edit.path == "/v1/images/edits"
    assert edit.body["model"] == "gpt-image-2" and edit.body["n"] == "1"
    assert edit.body["size"] == "2880x2880"  # the most pixels gpt-image-2 makes, square
    assert edit.body["input_fidelity"] == "high"
    assert edit.body["prompt"].startswith(UPSCALE_INSTRUCTION)
    assert "a red fox" in edit.body["prompt"]
    sent = edit.file("image")
    assert sent is not None and colour_of(sent.data) == colour_of(image_2)
    assert decode_image(sent.data).size == (1024, 1024)  # sent as it is: the model redraws it

    assert result.embeds[0]["title"] == "Upscale of image 2"
    assert result.embeds[0]["description"] == "a red fox"  # the member's prompt, not ours
    assert [a.filename for a in result.attachments] == ["image_1.png"]
    assert decode_image(result.files["image_1.png"]).size == (2880, 2880)
    assert field_value(result, "Cost").startswith("$")
    job = await store.get_job(harness.bot.storage.sessions, job_id_of(result))
    assert job is not None
    assert (job.source_job_id, job.source_index, job.action) == (parent, 1, "upscale")
    assert job.n_requested == 1 and job.size == "2880x2880" and job.input_fidelity == "high"
    assert job.cost_micro_usd is not None and job.cost_micro_usd > 0  # settled from usage
    assert not first.deleted


async def test_a_landscape_image_is_upscaled_in_its_own_shape(gpt_image_2: Harness) -> None:
    harness = gpt_image_2
    first = await imagine(harness, n=2, size="1536x1024")
    before = seen_ids(harness.fake)
    await harness.fake.click(first, f"ib:act:upscale:{job_id_of(first)}:0")
    result = await new_result(harness, before)
    assert harness.api.requests[-1].body["size"] == "3520x2336"
    assert decode_image(result.files["image_1.png"]).size == (3520, 2336)


async def count_jobs(harness: Harness) -> int:
    async with harness.bot.storage.sessions() as session:
        return int(await session.scalar(select(func.count(Job.id))) or 0)


async def refused(harness: Harness, result: StoredMessage, index: int) -> str:
    """Click U<index + 1>; the private answer, after checking nothing was sent or charged."""
    calls = len(harness.api.requests)
    jobs = await count_jobs(harness)
    click = await harness.fake.click(result, f"ib:act:upscale:{job_id_of(result)}:{index}")
    answer = await click.wait_message()
    await harness.idle()
    assert answer.ephemeral and not answer.attachments
    assert len(harness.api.requests) == calls  # refused before anything was queued or sent
    assert await count_jobs(harness) == jobs
    return answer.content


async def test_an_image_already_at_gpt_image_1s_largest_size_is_refused_naming_it(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(model="gpt-image-1")
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        first = await imagine(harness, n=2, size="1536x1024")
        text = await refused(harness, first, 1)
    reason = "this image is already 1536x1024, the largest gpt-image-1 makes"
    assert text == str(ActionUnsupported(reason=reason))
    assert text == "This result's backend can't do that: " + reason


async def test_dall_e_2_cannot_upscale_and_says_why(harness: Harness) -> None:
    first = await imagine(harness, n=2, size="256x256")
    text = await refused(harness, first, 0)
    assert text == (
        "This result's backend can't do that: dall-e-2 edits only repaint transparent areas "
        "of squares up to 1024x1024; it cannot upscale"
    )


async def test_an_upscale_counts_against_the_members_daily_images(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    quotas = dataclasses.replace(ROOMY_QUOTAS, member_images_per_day=3)
    settings = settings_factory(model="gpt-image-2", quotas=quotas)
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        fake = harness.fake
        first = await imagine(harness, n=2, size="1024x1024")
        await upscale_and_wait(harness, first, 0)  # the third image of the day
        calls = len(harness.api.requests)
        click = await fake.click(first, f"ib:act:upscale:{job_id_of(first)}:1")
        answer = await click.wait_message(lambda m: "images for today" in m.content)
        assert answer.ephemeral and "You have used your 3 images for today" in answer.content
        await harness.idle()
        assert len(harness.api.requests) == calls


async def upscale_and_wait(harness: Harness, result: StoredMessage, index: int) -> StoredMessage:
    before = seen_ids(harness.fake)
    await harness.fake.click(result, f"ib:act:upscale:{job_id_of(result)}:{index}")
    return await new_result(harness, before)


async def test_an_old_u_button_still_upscales_after_a_restart(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(model="gpt-image-2")
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        old = await imagine(harness, n=2, size="1024x1024")
    assert not fake_discord.connected
    async with run_bot(fake_discord, fake_images_api, settings) as harness:  # same database
        result = await upscale_and_wait(harness, old, 1)
        assert result.embeds[0]["title"] == "Upscale of image 2"
        sent = harness.api.requests[-1].file("image")
        assert sent is not None and colour_of(sent.data) == colour_of(old.files["image_2.png"])


async def test_redo_of_an_old_upscale_reads_its_image_from_the_result_it_came_from(
    gpt_image_2: Harness,
) -> None:
    from datetime import timedelta

    from bot.db.models import utcnow
    from bot.jobs.retention import prune

    harness = gpt_image_2
    first = await imagine(harness, n=2, size="1024x1024")
    upscaled = await upscale_and_wait(harness, first, 1)
    later = utcnow() + timedelta(days=31)
    await prune(harness.bot.storage, timedelta(days=30), now=later)  # its upload is gone

    before = seen_ids(harness.fake)
    click = await harness.fake.click(upscaled, f"ib:redo:{job_id_of(upscaled)}")
    assert (await click.response()).ephemeral
    redone = await new_result(harness, before)
    assert redone.embeds[0]["title"] == "Upscale"
    upscale_1, upscale_2 = (r for r in harness.api.requests if r.path.endswith("/edits"))
    sent_1, sent_2 = upscale_1.file("image"), upscale_2.file("image")
    assert sent_1 is not None and sent_2 is not None and sent_2.data == sent_1.data
    assert upscale_2.body["size"] == "2880x2880"
