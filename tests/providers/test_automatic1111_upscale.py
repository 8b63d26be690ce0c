"""AUTOMATIC1111's upscale (``extra-single-image``) against the fake server, and its refusals."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.config import ProviderSettings
from bot.imaging import ImageWorker
from bot.imaging.backend_masks import white_repaints
from bot.providers.automatic1111 import Automatic1111Client
from bot.providers.automatic1111_upscale import chosen_upscaler
from bot.providers.errors import UnknownUpscaler
from bot.providers.types import UpscaleRequest
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.images import colour_of, decode_image, png_bytes

GREEN = (10, 200, 30)


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as fake:
        yield fake


def client(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession, images: ImageWorker, **keys: Any
) -> Automatic1111Client:
    async def convert_mask(mask: bytes) -> bytes:
        return await images.run(white_repaints, mask)

    settings = ProviderSettings(
        type="automatic1111", base_url=a1111.base_url, model="", max_retries=0, **keys
    )
    return Automatic1111Client(
        session, settings, verify=images.verify_results, convert_mask=convert_mask
    )


async def test_the_image_comes_back_twice_as_large_from_the_chosen_upscaler(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession, images: ImageWorker
) -> None:
    backend = client(a1111, session, images, upscaler="ESRGAN_4x")
    result = await backend.upscale(UpscaleRequest(image=png_bytes(300, 200, GREEN)))
    (image,) = result.images
    assert (image.width, image.height) == (600, 400) and result.size == "600x400"
    assert colour_of(image.data) == GREEN and decode_image(image.data).size == (600, 400)
    (body,) = [b for p, b in a1111.requests if p.endswith("extra-single-image")]
    assert body["upscaler_1"] == "ESRGAN_4x" and body["upscaling_resize"] == 2
    assert colour_of(base64.b64decode(body["image"])) == GREEN
    assert result.seeds == ()


async def test_check_refuses_an_upscaler_the_server_lacks_naming_the_key(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession, images: ImageWorker
) -> None:
    assert "checkpoints" in await client(a1111, session, images).check_access()  # default: fine
    wrong = client(a1111, session, images, upscaler="Bicubic 9x")
    with pytest.raises(UnknownUpscaler) as refused:
        await wrong.check_access()
    assert "provider.upscaler 'Bicubic 9x'" in refused.value.detail
    assert "R-ESRGAN 4x+" in str(refused.value) and "Lanczos" not in str(refused.value)


def test_a_plain_resize_is_no_upscaler() -> None:
    offered = ["None", "Lanczos", "Nearest", "R-ESRGAN 4x+"]
    for name in ("Lanczos", "Nearest", "None"):
        with pytest.raises(UnknownUpscaler, match=r'no upscaler "\w+".*it has: R-ESRGAN 4x\+\.'):
            chosen_upscaler(name, offered)
    assert chosen_upscaler("", offered) == "R-ESRGAN 4x+"


async def test_the_fake_answers_an_unknown_upscaler_as_the_web_ui_does(
    a1111: FakeAutomatic1111, session: aiohttp.ClientSession
) -> None:
    body = {"image": base64.b64encode(png_bytes(64, 64, GREEN)).decode(), "upscaler_1": "Nope"}
    async with session.post(f"{a1111.base_url}/sdapi/v1/extra-single-image", json=body) as answer:
        assert answer.status == 500
        assert await answer.json() == {
            "error": "AssertionError",
            "detail": "",
            "body": "",
            "errors": "could not find upscaler named Nope",
        }
    body["upscaler_1"], body["upscaling_resize"] = "LDSR", -1
    async with session.post(f"{a1111.base_url}/sdapi/v1/extra-single-image", json=body) as answer:
        assert answer.status == 422
        ((problem,),) = [(await answer.json())["detail"]]
        assert problem["loc"] == ["body", "upscaling_resize"]
    async with session.get(f"{a1111.base_url}/sdapi/v1/upscalers") as answer:
        names = [item["name"] for item in await answer.json()]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "R-ESRGAN 4x+" in names
