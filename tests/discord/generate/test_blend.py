"""/blend end to end: several uploads become one GPT image edit whose ``image[]`` parts are the
normalized uploads in the member's order; the result is posted and charged per its tokens (each
picture's input tokens included); Redo sends the same pictures again. Backends that take one
picture per edit (dall-e-2, AUTOMATIC1111) refuse at once, before any download or charge."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import ModerationSettings, ProviderSettings, Settings
from bot.db.models import Intake, Job
from bot.generation import DEFAULT_BLEND_PROMPT, input_size, resolve_fit
from bot.imaging.normalize import normalize_image
from bot.jobs.intake import IntakeRequest
from bot.providers import Operation
from bot.providers.capabilities import DEFAULT_MODELS
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, InteractionHandle
from bot.testing.discord.models import walk_components
from bot.testing.harness import (
    Harness,
    a1111_backend,
    api_calls,
    job_id_of,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import decode_image, png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.generate.test_precheck import checked_bot

PROMPT = "a cat made of the first picture's clouds, sitting in the second one's garden"
#: Five uploads of different colours and shapes: the order sent must be theirs.
PICTURES = [
    png_bytes(64, 64, (200, 60, 40)),
    png_bytes(96, 64, (40, 160, 60)),
    png_bytes(64, 96, (40, 60, 200)),
    png_bytes(80, 80, (220, 200, 40)),
    png_bytes(120, 60, (120, 40, 160)),
]


def normalized(model: str, upload: bytes) -> bytes:
    """What the bot must send for ``upload``: the edit input normalization, at its own shape."""
    side = input_size(DEFAULT_MODELS[model], None, decode_image(upload).size)
    fit = resolve_fit("auto", Operation.VARY)
    return normalize_image(upload, side=side, fit=fit).png


async def blend(
    h: Harness, uploads: list[bytes], prompt: str | None = PROMPT, **more: Any
) -> InteractionHandle:
    options: dict[str, Any] = {
        f"image{index}": h.fake.add_attachment(data, f"picture{index}.png")
        for index, data in enumerate(uploads, 1)
    }
    if prompt is not None:
        options["prompt"] = prompt
    return await h.fake.slash("blend", {**options, **more})


async def jobs(h: Harness) -> list[Job]:
    async with h.bot.storage.sessions() as session:
        return list((await session.scalars(select(Job).order_by(Job.id))).all())


def sent_pictures(call: Any) -> list[bytes]:
    assert call.file("image") is None  # every picture is an image[] part
    return [f.data for f in call.files if f.name == "image[]"]


@pytest.fixture
def on_model(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> Callable[[str], Any]:
    def start(model: str) -> Any:
        return run_bot(fake_discord, fake_images_api, settings_factory(model=model))

    return start


@pytest.mark.parametrize(("model", "count"), [("gpt-image-1.5", 2), ("gpt-image-2", 5)])
async def test_blend_sends_every_normalized_picture_in_order_and_charges_its_tokens(
    on_model: Callable[[str], Any],
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    model: str,
    count: int,
) -> None:
    async with on_model(model) as h:
        handle = await blend(h, PICTURES[:count])
        response = await handle.response()
        assert response.type == 5 and response.ephemeral  # deferred privately at once
        assert handle.responded_within is not None and handle.responded_within < 3
        result = await h.result()
        await h.idle()
        (job,) = await jobs(h)
    (call,) = api_calls(fake_images_api, "edits")
    assert sent_pictures(call) == [normalized(model, data) for data in PICTURES[:count]]
    assert call.file("mask") is None
    assert call.form["prompt"] == PROMPT and call.form["model"] == model
    assert len(result.attachments) == 1
    assert result.embeds[0]["title"] == "Blend"
    assert result.embeds[0]["description"] == PROMPT
    # Charged from the tokens the API reported: each picture's input tokens (the fake counts
    # 323 a picture) at the image input rate, $8 per 1M; text $5, image output $30.
    text_tokens = len(PROMPT) // 4 + 1
    assert (job.action, job.command, job.n_charged) == ("blend", "blend", 1)
    assert job.input_tokens == text_tokens + 323 * count
    assert job.output_tokens is not None and job.output_tokens > 0
    assert job.cost_micro_usd == text_tokens * 5 + 323 * count * 8 + job.output_tokens * 30
    assert fake_discord.spec_violations == [] and fake_images_api.spec_violations == []


async def test_blend_without_a_prompt_asks_for_one_picture(
    on_model: Callable[[str], Any], fake_images_api: FakeImagesAPI
) -> None:
    async with on_model("gpt-image-1.5") as h:
        await blend(h, PICTURES[:2], prompt=None)
        await h.result()
    (call,) = api_calls(fake_images_api, "edits")
    assert call.form["prompt"] == DEFAULT_BLEND_PROMPT == "Blend these images into one picture."


async def test_redo_of_a_blend_sends_the_same_pictures_again(
    on_model: Callable[[str], Any], fake_images_api: FakeImagesAPI
) -> None:
    async with on_model("gpt-image-1.5") as h:
        await blend(h, PICTURES[:3])
        first = await h.result()
        before = seen_ids(h.fake)
        await h.idle()
        click = await h.fake.click(first, f"ib:redo:{job_id_of(first)}", user=h.fake.user)
        assert (await click.response()).ephemeral
        again = await new_result(h, before)
        assert again.embeds[0]["title"] == "Blend"
        cdn_reads = list(h.fake.cdn_requests)
    original, redone = api_calls(fake_images_api, "edits")
    assert sent_pictures(redone) == sent_pictures(original)
    assert len(sent_pictures(redone)) == 3
    assert redone.form["prompt"] == PROMPT
    assert len(cdn_reads) == 3  # the uploads were read once; Redo sent the kept pictures


async def test_remix_of_a_blend_sends_the_same_pictures_with_the_new_prompt(
    on_model: Callable[[str], Any], fake_images_api: FakeImagesAPI
) -> None:
    async with on_model("gpt-image-2") as h:
        await blend(h, PICTURES[:2])
        first = await h.result()
        await h.idle()
        click = await h.fake.click(first, f"ib:remix:{job_id_of(first)}", user=h.fake.user)
        assert (await click.response()).type == 9 and click.modal is not None
        (text_input,) = [
            c for c in walk_components(click.modal["components"]) if c.get("type") == 4
        ]
        assert text_input["value"] == PROMPT
        before = seen_ids(h.fake)
        await h.fake.submit_modal(click, {text_input["custom_id"]: "both, at night"})
        remixed = await new_result(h, before)
        assert remixed.embeds[0]["title"] == "Blend"
    original, remix = api_calls(fake_images_api, "edits")
    assert remix.form["prompt"] == "both, at night"
    assert sent_pictures(remix) == sent_pictures(original)


async def test_a_blend_upload_that_is_not_an_image_is_refused_at_once(
    on_model: Callable[[str], Any], fake_images_api: FakeImagesAPI
) -> None:
    async with on_model("gpt-image-1.5") as h:
        picture = h.fake.add_attachment(PICTURES[0], "garden.png")
        notes = h.fake.add_attachment(b"my shopping list", "notes.txt")
        handle = await h.fake.slash("blend", {"image1": picture, "image2": notes})
        response = await handle.response()
        assert response.type == 4 and response.ephemeral
        assert response.data["content"] == (
            "“notes.txt” is not an image. Upload a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        )
        assert h.fake.cdn_requests == []
        assert await jobs(h) == []
    assert fake_images_api.requests == []


REFUSAL = "This server's backend can't blend images; blending needs a GPT image model."


async def assert_refused_before_download(h: Harness, handle: InteractionHandle) -> None:
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    assert response.data["content"] == REFUSAL
    assert handle.responded_within is not None and handle.responded_within < 3
    assert h.fake.cdn_requests == []  # nothing downloaded
    assert await jobs(h) == []  # nothing queued, reserved or charged
    assert h.fake.messages(sources=("channel", "followup")) == []


async def test_dall_e_2_refuses_to_blend_before_any_download(
    harness: Harness, fake_images_api: FakeImagesAPI
) -> None:
    await assert_refused_before_download(harness, await blend(harness, PICTURES[:2]))
    assert fake_images_api.requests == []


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


async def test_automatic1111_refuses_to_blend_before_any_download(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> None:
    settings = settings_factory(provider=ProviderSettings(**a1111_backend(a1111)))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as h:
        await assert_refused_before_download(h, await blend(h, PICTURES[:3]))
    assert not [path for path, _ in a1111.requests if "2img" in path]
    assert fake_images_api.requests == []


async def test_a_blocked_term_in_a_blends_prompt_is_refused_before_any_download(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        model="gpt-image-1.5", moderation=ModerationSettings(blocked_terms=("Dragon*",))
    )
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        handle = await blend(h, PICTURES[:2], prompt="two dragons in a garden")
        response = await handle.response()
        assert response.type == 4 and response.ephemeral
        assert response.data["content"] == (
            "That prompt contains a term this server doesn't allow. Please rephrase it."
        )
        assert h.fake.cdn_requests == []
        assert await jobs(h) == []
    assert fake_images_api.requests == []


async def test_more_pictures_than_the_operators_model_takes_are_refused_at_once(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """An operator's model of a compatible server that takes 3 pictures per edit."""
    settings = settings_factory(model="gpt-image-1.5")
    models = {"gpt-image-1.5": {"max_input_images": 3}}
    settings = dataclasses.replace(
        settings, provider=dataclasses.replace(settings.provider, models=models)
    )
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        handle = await blend(h, PICTURES[:4])
        response = await handle.response()
        assert response.type == 4 and response.ephemeral
        assert response.data["content"] == (
            "gpt-image-1.5 takes at most 3 images in one request; you gave 4."
        )
        assert h.fake.cdn_requests == []
        await blend(h, PICTURES[:3])
        await h.result()
    (call,) = api_calls(fake_images_api, "edits")
    assert len(sent_pictures(call)) == 3


async def test_the_acknowledged_blend_keeps_every_uploads_url_for_a_restart(
    on_model: Callable[[str], Any], fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """While the uploads are read, the intake (what a restart finishes) lists all of them."""
    fake_discord.cdn_gate = asyncio.Event()  # the downloads wait
    async with on_model("gpt-image-1.5") as h:
        handle = await blend(h, PICTURES[:3])
        assert (await handle.response()).type == 5
        async with h.bot.storage.sessions() as session:
            (intake,) = (await session.scalars(select(Intake))).all()
        request = IntakeRequest.from_json(intake.request)
        assert [upload.subject for upload in request.uploads] == ["image", "image2", "image3"]
        assert [upload.filename for upload in request.uploads] == [
            "picture1.png",
            "picture2.png",
            "picture3.png",
        ]
        assert len({upload.url for upload in request.uploads}) == 3
        assert request.image_order().action == "blend"
        fake_discord.cdn_gate.set()
        await h.result()
    (call,) = api_calls(fake_images_api, "edits")
    assert sent_pictures(call) == [normalized("gpt-image-1.5", data) for data in PICTURES[:3]]


async def test_the_precheck_screens_every_picture_of_a_blend(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """One moderation request per picture (the prompt with the first), each the very PNG the
    edit sends; a flagged picture refuses the blend before it is sent."""
    settings = settings_factory(model="gpt-image-1.5")
    async with checked_bot(fake_discord, fake_images_api, settings) as h:
        await blend(h, PICTURES[:3])
        await h.result()
        (edit,) = api_calls(fake_images_api, "edits")
        calls = fake_images_api.moderation.calls
        assert [call.texts for call in calls] == [[PROMPT], [], []]
        assert [image for call in calls for image in call.images] == sent_pictures(edit)

        fake_images_api.moderation.flag_images = True
        handle = await blend(h, PICTURES[1:3], prompt="a quiet garden")
        flagged = h.bot.catalog.text("moderation.precheck_flagged", categories="sexual")
        message = await handle.wait_message(lambda m: m.content == flagged)
        assert message.ephemeral
        await h.idle()
    assert len(api_calls(fake_images_api, "edits")) == 1  # the flagged blend was never sent
