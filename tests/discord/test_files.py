"""Uploads are sent whole from the bytes they were made from (bot.discord.files): the member
gets exactly the provider's image, also when discord.py sends it again after a server error."""

from __future__ import annotations

import io

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bot.discord.files import UploadBuffer, WholePayload, upload_file
from bot.testing import openai_rules as rules
from bot.testing.harness import Harness, new_result
from tests.web_app import served

PROMPT = "a heron standing in the reeds"


def provider_image(index: int = 0) -> bytes:
    """What the fake image API answers for PROMPT on dall-e-2 at 256x256 with 2 noise bits
    (cached there: the very bytes it sent)."""
    colour = rules.colour_for(PROMPT, "dall-e-2", index)
    return rules.make_noisy_image(256, 256, colour, "png", 2)


async def test_a_result_reaches_discord_byte_for_byte(harness: Harness) -> None:
    harness.api.noise_bits = 2  # photo-like, not a solid colour: a body worth checking
    handle = await harness.fake.slash("imagine", {"prompt": PROMPT, "count": 2, "size": "256x256"})
    assert (await handle.response()).ephemeral
    result = await new_result(harness, set())
    assert result.files == {"image_1.png": provider_image(0), "image_2.png": provider_image(1)}


async def test_a_result_sent_again_after_a_server_error_arrives_whole(harness: Harness) -> None:
    harness.api.noise_bits = 2
    # discord.py sends a follow-up again after a 5xx, with a payload built anew from the file.
    harness.fake.fail_next("POST", r"/webhooks/\d+/[^/]+$", 500, 0, "Internal Server Error")
    handle = await harness.fake.slash("imagine", {"prompt": PROMPT, "size": "256x256"})
    assert (await handle.response()).ephemeral
    result = await new_result(harness, set())
    assert result.source == "followup"
    assert harness.fake.failure_rules == []  # the error was answered: this is the second send
    assert result.files == {"image_1.png": provider_image(0)}
    with Image.open(io.BytesIO(result.files["image_1.png"])) as image:
        assert image.size == (256, 256)


async def test_an_upload_is_sent_from_where_its_buffer_stands() -> None:
    """As aiohttp's own BytesIO payload does: what was read already is not sent."""
    received: list[bytes] = []

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        field = form["file"]
        assert isinstance(field, web.FileField)
        received.append(field.file.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", upload)
    file = upload_file(b"HEADERpicture bytes", "a.png")
    file.fp.seek(6)
    payload = aiohttp.payload.get_payload(file.fp, filename="a.png")
    assert isinstance(payload, WholePayload) and payload.size == len(b"picture bytes")
    async with served(app) as base_url, aiohttp.ClientSession() as session:
        for _ in range(2):  # the same file twice, as a retry sends it
            form = aiohttp.FormData()
            form.add_field("file", file.fp, filename="a.png", content_type="image/png")
            async with session.post(f"{base_url}/", data=form) as response:
                assert response.status == 200
    assert received == [b"picture bytes", b"picture bytes"]


@pytest.mark.parametrize("spoiler", [False, True])
def test_an_upload_file_is_named_as_discord_shows_it(spoiler: bool) -> None:
    file = upload_file(b"\x89PNG", "image_1.png", spoiler=spoiler)
    assert isinstance(file.fp, UploadBuffer)
    assert file.filename == ("SPOILER_image_1.png" if spoiler else "image_1.png")
