"""An answer that does not keep to the request: more images, sizes and qualities never asked for."""

from __future__ import annotations

import logging

import pytest

from bot.providers import MalformedResponse
from bot.providers.types import GenerateRequest
from tests.fakes.openai_api import FakeImagesAPI
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
