"""Successful operations against the fake API, for each kind of default model."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from bot.errors import ConfigError
from bot.providers import (
    DEFAULT_MODELS,
    EditRequest,
    GenerateRequest,
    ImagesClient,
    MalformedResponse,
    PromptTooLong,
    TooManyImages,
    UnknownModel,
    UnsupportedOperation,
    UnsupportedSize,
    VaryRequest,
)
from bot.testing.images import colour_of
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.openai_rules import colour_for
from tests.providers.conftest import MakeClient, png


def _decoded_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_dall_e_2_generate(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    client = make_client(model="dall-e-2")
    result = await client.generate(GenerateRequest("a red fox", n=2, size="256x256"))
    assert [(i.mime_type, i.width, i.height) for i in result.images] == [
        ("image/png", 256, 256)
    ] * 2
    assert result.images[0].data != result.images[1].data
    assert _decoded_size(result.images[0].data) == (256, 256)
    assert result.model == "dall-e-2" and result.size == "256x256" and result.usage is None
    body = fake_images_api.requests[0].body
    assert body == {
        "model": "dall-e-2",
        "prompt": "a red fox",
        "n": 2,
        "size": "256x256",
        "response_format": "b64_json",
    }
    assert (
        fake_images_api.requests[0].headers["Authorization"] == f"Bearer {fake_images_api.api_key}"
    )


async def test_different_prompts_give_different_images(make_client: MakeClient) -> None:
    client = make_client(model="dall-e-2")
    fox = await client.generate(GenerateRequest("a fox", size="256x256"))
    owl = await client.generate(GenerateRequest("an owl", size="256x256"))
    assert fox.images[0].data != owl.images[0].data


async def test_dall_e_2_edit_with_mask(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="dall-e-2")
    image, mask = png(64, 64), png(64, 64, colour=(0, 0, 0, 255))
    result = await client.edit(EditRequest(image, "add a hat", mask=mask, size="512x512"))
    assert (result.images[0].width, result.images[0].height) == (512, 512)
    record = fake_images_api.requests[0]
    assert record.path == "/v1/images/edits"
    assert record.form["model"] == "dall-e-2" and record.form["response_format"] == "b64_json"
    uploaded = record.file("image")
    assert uploaded is not None and uploaded.data == image
    assert uploaded.filename == "image.png" and uploaded.content_type == "image/png"
    assert record.file("mask") is not None and record.file("mask").data == mask  # type: ignore[union-attr]


async def test_dall_e_2_native_variation(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="dall-e-2")
    result = await client.vary(VaryRequest(png(), n=3, size="256x256"))
    assert len(result.images) == 3
    record = fake_images_api.requests[0]
    assert record.path == "/v1/images/variations"
    assert "prompt" not in record.form and record.form["n"] == "3"


async def test_dall_e_3_generate_keeps_revised_prompt(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="dall-e-3")
    result = await client.generate(
        GenerateRequest("a lighthouse", size="1792x1024", quality="hd", style="natural")
    )
    assert result.revised_prompts == ["A detailed, vivid illustration of: a lighthouse"]
    assert (result.images[0].width, result.images[0].height) == (1792, 1024)
    assert fake_images_api.requests[0].body["style"] == "natural"


async def test_a_prompt_that_looks_like_the_answer_s_image_field_changes_nothing(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    """The image's base64 is found in the raw answer before the JSON is parsed: a revised
    prompt quoting that field is text, and the images are the ones sent, in order."""
    client = make_client(model="dall-e-3")
    prompt = 'a sign reading "b64_json": "AAAA" and a quote \\" too'
    result = await client.generate(GenerateRequest(prompt, size="1024x1024"))
    assert fake_images_api.requests[0].body["response_format"] == "b64_json"
    assert result.revised_prompts == [f"A detailed, vivid illustration of: {prompt}"]
    assert colour_of(result.images[0].data) == colour_for(prompt, "dall-e-3", 0)


async def test_gpt_image_2_generate_reports_usage_and_options(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client()  # gpt-image-2 is the default model
    result = await client.generate(
        GenerateRequest(
            "a bowl of ramen", size="1536x864", quality="high", background="opaque",
            output_format="webp",
        )
    )  # fmt: skip
    image = result.images[0]
    assert (image.mime_type, image.width, image.height, image.extension) == (
        "image/webp", 1536, 864, "webp"
    )  # fmt: skip
    assert (result.size, result.quality, result.background, result.output_format) == (
        "1536x864", "high", "opaque", "webp"
    )  # fmt: skip
    assert result.usage is not None and result.usage.output_tokens == 4160
    assert result.usage.input_text_tokens > 0 and result.usage.total_tokens > 4160
    body = fake_images_api.requests[0].body
    assert body["model"] == "gpt-image-2" and "response_format" not in body


async def test_gpt_image_2_auto_size_reports_the_real_size(make_client: MakeClient) -> None:
    result = await make_client().generate(GenerateRequest("a cat"))
    assert result.size == "1024x1024" and result.quality == "medium"


async def test_gpt_image_2_edit(make_client: MakeClient, fake_images_api: FakeImagesAPI) -> None:
    client = make_client()
    result = await client.edit(EditRequest(png(96, 64, "RGB"), "make it night", n=2))
    assert len(result.images) == 2
    assert result.usage is not None and result.usage.input_image_tokens > 0
    assert fake_images_api.requests[0].form["size"] == "auto"


async def test_gpt_image_2_vary_goes_through_edits(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client()
    result = await client.vary(VaryRequest(png(), n=2))
    assert len(result.images) == 2 and result.usage is not None
    record = fake_images_api.requests[0]
    assert record.path == "/v1/images/edits"
    assert record.form["prompt"] == DEFAULT_MODELS["gpt-image-2"].vary_prompt
    assert record.file("mask") is None


async def test_vary_prompt_can_be_overridden(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(models={"gpt-image-2": {"vary_prompt": "Same scene, new take."}})
    await client.vary(VaryRequest(png()))
    assert fake_images_api.requests[0].form["prompt"] == "Same scene, new take."


async def test_url_answers_are_downloaded_without_the_key(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.respond_with_url = True
    client = make_client(model="dall-e-2")
    result = await client.generate(GenerateRequest("a fox", n=2, size="256x256"))
    assert [i.width for i in result.images] == [256, 256]
    assert len(fake_images_api.downloads) == 2
    assert all("Authorization" not in d.headers for d in fake_images_api.downloads)


async def test_url_answers_for_gpt_models_too(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.respond_with_url = True
    result = await make_client().edit(EditRequest(png(), "x"))
    assert result.images[0].mime_type == "image/png" and len(fake_images_api.downloads) == 1


async def test_expired_url_is_a_malformed_response(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.respond_with_url = True
    fake_images_api.url_lifetime = 0
    with pytest.raises(MalformedResponse) as info:
        await make_client(model="dall-e-2").generate(GenerateRequest("a fox"))
    assert info.value.status == 403 and "expired" in info.value.detail


@pytest.mark.parametrize(
    ("model", "request_", "error"),
    [
        ("dall-e-3", VaryRequest(png()), UnsupportedOperation),
        ("dall-e-3", EditRequest(png(), "x"), UnsupportedOperation),
        ("dall-e-3", GenerateRequest("x", n=2), TooManyImages),
        ("dall-e-2", GenerateRequest("x", size="1792x1024"), UnsupportedSize),
        ("dall-e-2", GenerateRequest("x" * 1001), PromptTooLong),
        ("gpt-image-2", GenerateRequest("x", model="dall-e-4"), UnknownModel),
    ],
)
async def test_capability_checks_send_nothing(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    model: str,
    request_: GenerateRequest | EditRequest | VaryRequest,
    error: type[Exception],
) -> None:
    client = make_client(model=model)
    with pytest.raises(error):
        if isinstance(request_, GenerateRequest):
            await client.generate(request_)
        elif isinstance(request_, EditRequest):
            await client.edit(request_)
        else:
            await client.vary(request_)
    assert fake_images_api.requests == []


async def test_request_model_overrides_the_default(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    result = await make_client().generate(GenerateRequest("x", model="gpt-image-1-mini"))
    assert result.model == "gpt-image-1-mini"
    assert fake_images_api.requests[0].body["model"] == "gpt-image-1-mini"


async def test_operator_added_model(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.add_model("local-dalle", like="dall-e-2")
    client = make_client(model="local-dalle", models={"local-dalle": {"based_on": "dall-e-2"}})
    result = await client.vary(VaryRequest(png()))
    assert result.model == "local-dalle"
    assert fake_images_api.requests[0].path == "/v1/images/variations"


def test_unknown_default_model_is_a_config_error(make_client: MakeClient) -> None:
    with pytest.raises(ConfigError, match=r"provider\.model"):
        make_client(model="nope")


# --- the `user` field --------------------------------------------------------------------------


async def test_user_is_a_stable_salted_hash(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client()
    await client.generate(GenerateRequest("x", user_id="123456789"))
    await client.edit(EditRequest(png(), "x", user_id="123456789"))
    await client.generate(GenerateRequest("x", user_id="987654321"))
    first, second, other = (r.body["user"] for r in fake_images_api.requests)
    assert first == second != other
    assert "123456789" not in first and len(first) == 32
    assert first != hashlib.sha256(b"123456789").hexdigest()[:32]  # not an unsalted hash
    assert make_client(user_salt="another").user_hash("123456789") != first


async def test_without_any_salt_no_user_is_sent(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    """The one-shot commands have no installation salt: nothing derived from the key is sent."""
    await make_client(user_salt="").generate(GenerateRequest("x", user_id="cli"))
    assert "user" not in fake_images_api.requests[-1].body


async def test_user_is_omitted_when_absent_or_unsupported(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    await make_client().generate(GenerateRequest("x"))
    client = make_client(models={"gpt-image-2": {"accepts_user": False}})
    await client.generate(GenerateRequest("x", user_id="42"))
    assert all("user" not in r.body for r in fake_images_api.requests)


def test_client_repr_names_no_secret(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client: ImagesClient = make_client()
    assert fake_images_api.api_key not in repr(client)
    assert "test-salt" not in repr(client)


async def test_an_edit_sends_input_fidelity_and_the_fake_takes_it(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    await make_client().edit(EditRequest(png(), "subtle", input_fidelity="high"))
    assert fake_images_api.requests[0].form["input_fidelity"] == "high"
