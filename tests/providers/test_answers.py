"""An answer that does not keep to the request: more images, sizes and qualities never asked for."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from bot.imaging import ImageWorker
from bot.imaging.worker import DEFAULT_WORKERS
from bot.providers import MalformedResponse
from bot.providers.types import GenerateRequest
from bot.testing.openai_api import FakeImagesAPI
from tests.imaging.samples import png_header_only
from tests.providers.conftest import MakeClient


async def test_more_images_than_asked_for_are_dropped_before_download(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_images_api.respond_with_url = True
    fake_images_api.misbehave_next(images=10)
    client = make_client(model="dall-e-2")
    with caplog.at_level(logging.WARNING, "bot.providers"):
        result = await client.generate(GenerateRequest("a fox", n=2, size="256x256"))
    assert len(result.images) == 2
    assert len(fake_images_api.downloads) == 2
    assert "image API sent 10 images for 2 asked: keeping 2" in caplog.text


async def test_a_size_and_quality_the_model_does_not_offer_are_ignored(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_images_api.misbehave_next(size="99999x99999999", quality="ultra-premium")
    with caplog.at_level(logging.WARNING, "bot.providers"):
        result = await make_client().generate(
            GenerateRequest("a fox", size="1024x1024", quality="low")
        )
    assert (result.size, result.quality) == ("1024x1024", "low")
    assert "size '99999x99999999', which the model does not offer" in caplog.text


async def test_an_answer_size_the_model_offers_is_kept_for_an_auto_request(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.misbehave_next(size="1536x1024", quality="high")
    result = await make_client().generate(GenerateRequest("a fox", size="auto", quality="auto"))
    assert (result.size, result.quality) == ("1536x1024", "high")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_an_image_larger_than_any_model_makes_is_refused(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    # 100 MP: below Pillow's own hard limit, so only our check stands between it and delivery,
    # which would decode it (400 MB) to re-encode it for Discord.
    fake_images_api.misbehave_next(image=png_header_only(10_000, 10_000))
    with pytest.raises(MalformedResponse) as caught:
        await make_client(model="dall-e-2").generate(GenerateRequest("a fox"))
    assert caught.value.detail == "image is 10000x10000 pixels, more than any model makes"


async def test_answers_are_checked_on_the_bounded_image_worker(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, images: ImageWorker
) -> None:
    """Decoding an answer is Pillow work like any other: while every thread of the image
    worker is busy, an answer waits for one instead of taking a thread of its own."""
    client = make_client(model="dall-e-2")
    release = threading.Event()
    busy = [asyncio.ensure_future(images.run(release.wait, 10)) for _ in range(DEFAULT_WORKERS)]
    call = asyncio.ensure_future(client.generate(GenerateRequest("a fox", size="256x256")))
    async with asyncio.timeout(10):
        while not fake_images_api.requests:  # noqa: ASYNC110 - the fake has no event to wait on
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    assert not call.done()  # answered, not checked: the pool is full
    release.set()
    result = await asyncio.wait_for(call, 10)
    assert len(result.images) == 1 and result.images[0].mime_type == "image/png"
    await asyncio.gather(*busy)
