"""Wrong input is answered privately, precisely and before anything is queued or paid for.

What Discord already tells us (a file's type and declared size, the prompt) is answered as the
first response, within the 3 seconds. What only the bytes can tell (a file that isn't an image,
a mask of another size) is answered after the download, still privately and before queueing;
so is what needs the pixels (an opaque picture without a mask): uploads are normalized before
they are queued. In every case nothing public is posted and the image API is never called.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.config import ImagesSettings, Settings
from bot.db.models import Job
from bot.imaging import ACCEPTED_NAMES
from bot.testing.discord import FakeDiscord
from bot.testing.discord.handle import InteractionHandle
from bot.testing.harness import Harness, api_calls, en, run_bot
from bot.testing.images import bw_mask_bytes, decode_image, noise_png, png_bytes
from bot.testing.openai_api import FakeImagesAPI


def nothing_public(harness: Harness) -> None:
    public = [
        m
        for m in harness.fake.messages(sources=("channel", "followup", "response"))
        if not m.ephemeral
    ]
    assert public == []
    assert harness.api.requests == []


async def answered_at_once(handle: InteractionHandle, text: str) -> None:
    """The first response is the private error itself (no defer)."""
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    assert response.data["content"] == text
    assert handle.responded_within is not None and handle.responded_within < 3


async def answered_after_defer(harness: Harness, handle: InteractionHandle, text: str) -> None:
    """A private defer, then the private message with ``text`` (the job, if any, ended)."""
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    message = await handle.wait_message(lambda m: m.content == text)
    assert message.ephemeral
    await harness.idle()


async def jobs_recorded(harness: Harness) -> int:
    async with harness.bot.storage.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


# --- answered at once, from what Discord says about the upload ----------------------------------


async def test_a_text_file_is_not_an_image(harness: Harness) -> None:
    notes = harness.fake.add_attachment(b"my shopping list", "notes.txt")
    handle = await harness.fake.slash("vary", {"image": notes})
    await answered_at_once(
        handle,
        "“notes.txt” is not an image. Upload a PNG, JPEG, WebP, GIF, BMP or TIFF file.",
    )
    nothing_public(harness)


async def test_a_pdf_is_not_an_image_to_edit(harness: Harness) -> None:
    pdf = harness.fake.add_attachment(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "plan.pdf")
    handle = await harness.fake.slash("edit", {"image": pdf, "prompt": "add a door"})
    await answered_at_once(handle, en(harness, "error.attachment_not_image", filename="plan.pdf"))
    nothing_public(harness)


async def test_a_mask_that_is_not_an_image_is_named(harness: Harness) -> None:
    fake = harness.fake
    picture = fake.add_attachment(png_bytes(64, 64), "room.png")
    mask = fake.add_attachment(b"not a mask", "mask.txt")
    handle = await fake.slash("edit", {"image": picture, "mask": mask, "prompt": "a door"})
    await answered_at_once(handle, en(harness, "error.attachment_not_image", filename="mask.txt"))
    nothing_public(harness)


async def test_uploads_over_the_size_limit(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake = fake_discord
    settings = settings_factory(images=ImagesSettings(max_upload_mb=0.5))
    big = noise_png(512)  # about 0.75 MB
    assert 0.6 * 1024 * 1024 < len(big) < 0.8 * 1024 * 1024
    async with run_bot(fake, fake_images_api, settings) as harness:
        handle = await fake.slash("vary", {"image": fake.add_attachment(big, "big.png")})
        await answered_at_once(handle, "That file is 0.8 MB; the limit is 0.5 MB.")

        picture = fake.add_attachment(png_bytes(512, 512), "room.png")
        mask = fake.add_attachment(big, "mask.png")
        handle = await fake.slash("edit", {"image": picture, "mask": mask, "prompt": "a door"})
        await answered_at_once(handle, "Mask: That file is 0.8 MB; the limit is 0.5 MB.")
        nothing_public(harness)
    assert fake.spec_violations == []


async def test_a_prompt_too_long_for_the_model(harness: Harness) -> None:
    handle = await harness.fake.slash("imagine", {"prompt": "a" * 1001})
    await answered_at_once(
        handle, "The prompt is 1001 characters long; dall-e-2 accepts at most 1000."
    )
    nothing_public(harness)


async def test_a_blank_prompt(harness: Harness) -> None:
    handle = await harness.fake.slash("imagine", {"prompt": "   "})
    await answered_at_once(handle, en(harness, "error.prompt_empty"))
    nothing_public(harness)


async def test_discord_itself_refuses_a_count_out_of_range(harness: Harness) -> None:
    """The synced min/max make Discord's client refuse these: the bot never sees them."""
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        await harness.fake.slash("imagine", {"prompt": "cats", "count": 11})
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        await harness.fake.slash("imagine", {"prompt": "cats", "count": 0})


# --- answered after the download, before queueing ------------------------------------------------


async def test_a_mask_of_another_shape(harness: Harness) -> None:
    fake = harness.fake
    picture = fake.add_attachment(png_bytes(256, 256), "room.png")
    mask = fake.add_attachment(bw_mask_bytes(128, 96, (0, 0, 63, 63)), "mask.png")
    handle = await fake.slash("edit", {"image": picture, "mask": mask, "prompt": "a door"})
    text = (
        "The mask is 128x96 pixels but the image is 256x256; a mask must have the image's "
        "size, or its shape at another size."
    )
    await answered_after_defer(harness, handle, text)
    nothing_public(harness)
    assert await jobs_recorded(harness) == 0  # told before queueing


async def test_a_mask_of_the_same_shape_at_half_the_size_is_scaled_to_the_image(
    harness: Harness,
) -> None:
    fake = harness.fake
    picture = fake.add_attachment(png_bytes(256, 256), "room.png")
    mask = fake.add_attachment(bw_mask_bytes(128, 128, (0, 0, 63, 63)), "mask.png")
    await fake.slash(
        "edit", {"image": picture, "mask": mask, "prompt": "a door", "size": "256x256"}
    )
    await harness.result()
    (call,) = api_calls(harness.api, "edits")
    sent = call.file("mask")
    assert sent is not None
    alpha = decode_image(sent.data).convert("RGBA").getchannel("A")
    assert alpha.size == (256, 256)
    assert alpha.getpixel((100, 100)) == 0  # the top-left quarter is repainted
    assert alpha.getpixel((160, 160)) == 255  # the rest is kept
    histogram = alpha.histogram()
    assert histogram[0] + histogram[255] == 256 * 256  # no soft edge


async def test_a_16_pixel_icon_is_scaled_up_not_refused(harness: Harness) -> None:
    upload = harness.fake.add_attachment(png_bytes(16, 16), "icon.png")
    await harness.fake.slash("vary", {"image": upload, "size": "256x256"})
    result = await harness.result()
    assert len(result.attachments) == 1
    (call,) = api_calls(harness.api, "variations")
    sent = call.file("image")
    assert sent is not None and decode_image(sent.data).size == (256, 256)


async def test_a_png_name_on_a_text_file(harness: Harness) -> None:
    upload = harness.fake.add_attachment(b"definitely not a picture", "photo.png")
    assert upload["content_type"] == "image/png"  # Discord guessed from the name
    handle = await harness.fake.slash("vary", {"image": upload})
    text = f"That file isn't an image. Please upload a picture as {ACCEPTED_NAMES}."
    await answered_after_defer(harness, handle, text)
    nothing_public(harness)
    assert await jobs_recorded(harness) == 0


async def test_an_empty_file(harness: Harness) -> None:
    upload = harness.fake.add_attachment(b"", "empty.png")
    handle = await harness.fake.slash("vary", {"image": upload})
    await answered_after_defer(harness, handle, en(harness, "image.empty"))
    nothing_public(harness)
    assert await jobs_recorded(harness) == 0


async def test_a_truncated_image(harness: Harness) -> None:
    whole = png_bytes(64, 64, (10, 200, 30))
    cut = whole[:60]  # the header survives, the pixels don't
    handle = await harness.fake.slash("vary", {"image": harness.fake.add_attachment(cut, "c.png")})
    await answered_after_defer(harness, handle, en(harness, "image.corrupt"))
    nothing_public(harness)


# --- answered once the pixels are read, before anything is queued --------------------------------


async def test_edit_without_mask_of_an_opaque_photo_explains_masks(harness: Harness) -> None:
    upload = harness.fake.add_attachment(png_bytes(256, 256), "photo.png")
    handle = await harness.fake.slash("edit", {"image": upload, "prompt": "a hat"})
    text = en(harness, "image.edit_needs_mask")
    assert "transparent" in text and "mask" in text
    await answered_after_defer(harness, handle, text)
    nothing_public(harness)


async def test_what_needs_the_pixels_is_refused_before_a_job_is_queued(harness: Harness) -> None:
    """No job, so nothing of the quota reserved and no place in the queue taken, even briefly:
    the upload is normalized before the request is admitted."""
    fake = harness.fake
    opaque = fake.add_attachment(png_bytes(256, 256), "photo.png")
    handle = await fake.slash("edit", {"image": opaque, "prompt": "a hat"})
    await answered_after_defer(harness, handle, en(harness, "image.edit_needs_mask"))
    picture = fake.add_attachment(png_bytes(64, 64), "room.png")
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 0).save(buffer, "PNG")  # all black: keep everything
    mask = fake.add_attachment(buffer.getvalue(), "mask.png")
    handle = await fake.slash("edit", {"image": picture, "mask": mask, "prompt": "a door"})
    await answered_after_defer(harness, handle, en(harness, "image.mask_empty"))
    assert await jobs_recorded(harness) == 0
    nothing_public(harness)


async def test_a_mask_that_marks_nothing(harness: Harness) -> None:
    fake = harness.fake
    picture = fake.add_attachment(png_bytes(64, 64), "room.png")
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 0).save(buffer, "PNG")  # all black: keep everything
    mask = fake.add_attachment(buffer.getvalue(), "mask.png")
    handle = await fake.slash("edit", {"image": picture, "mask": mask, "prompt": "a door"})
    await answered_after_defer(harness, handle, en(harness, "image.mask_empty"))
    nothing_public(harness)


async def test_an_upload_discord_no_longer_serves(harness: Harness) -> None:
    """The CDN answers 404 (the file was deleted meanwhile): the member is asked to upload it
    again, not told that the image service is down."""
    upload = harness.fake.add_attachment(png_bytes(64, 64), "gone.png")
    del harness.fake.state.blobs[int(upload["id"])]
    handle = await harness.fake.slash("vary", {"image": upload})
    text = en(harness, "error.upload_unavailable")
    assert "upload" in text and "image service" not in text
    await answered_after_defer(harness, handle, text)
    nothing_public(harness)
    assert await jobs_recorded(harness) == 0
