"""How large each model upscales an image to, and the limits it names where it cannot."""

from __future__ import annotations

import pytest

from bot.providers import DEFAULT_MODELS, EditRequest, UnsupportedOption, check_request
from bot.providers.capabilities import FreeSizeRule, build_model_table
from bot.providers.client import ImagesClient
from bot.providers.types import UpscaleRequest
from bot.providers.upscale import (
    UPSCALE_INSTRUCTION,
    NoLargerSize,
    largest_free_shape,
    upscale_instruction,
    upscale_size,
)
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient, png


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((1024, 1024), "2880x2880"),
        ((1536, 1024), "3520x2336"),
        ((1024, 1536), "2336x3520"),
        ((2048, 512), "3840x1280"),  # 4:1 is beyond 3:1: the widest it makes
    ],
)
def test_gpt_image_2_upscales_to_its_most_pixels_in_the_images_shape(
    source: tuple[int, int], target: str
) -> None:
    assert upscale_size(DEFAULT_MODELS["gpt-image-2"], source) == target


def test_a_free_shape_keeps_every_limit_of_the_rule() -> None:
    rule = FreeSizeRule()
    for ratio in (1.0, 1.5, 16 / 9, 2.5, 3.0, 1 / 3):
        shape = largest_free_shape(rule, ratio)
        assert shape is not None and rule.allows(*shape)


def test_gpt_image_1_is_at_its_largest_already() -> None:
    spec = DEFAULT_MODELS["gpt-image-1"]
    with pytest.raises(NoLargerSize, match=r"already 1536x1024, the largest gpt-image-1 makes$"):
        upscale_size(spec, (1536, 1024))
    with pytest.raises(NoLargerSize, match=r"already 1024x1024, the largest gpt-image-1 makes$"):
        upscale_size(spec, (1024, 1024))
    # A smaller picture of that shape (an operator's model, an upload) does get larger.
    assert upscale_size(spec, (768, 512)) == "1536x1024"


def test_an_image_larger_than_every_size_names_the_largest_of_its_shape() -> None:
    with pytest.raises(NoLargerSize, match=r"already 2048x1365, .* of its shape \(1536x1024\)"):
        upscale_size(DEFAULT_MODELS["gpt-image-1.5"], (2048, 1365))


def test_dall_e_models_cannot_upscale() -> None:
    with pytest.raises(NoLargerSize, match="dall-e-3 cannot edit images"):
        upscale_size(DEFAULT_MODELS["dall-e-3"], (1024, 1024))
    with pytest.raises(NoLargerSize, match="squares up to 1024x1024; it cannot upscale"):
        upscale_size(DEFAULT_MODELS["dall-e-2"], (256, 256))


def test_the_instruction_comes_first_and_the_prompt_fits_the_limit() -> None:
    text = upscale_instruction("a red fox " * 200, 300)
    assert text.startswith(UPSCALE_INSTRUCTION) and len(text) == 300
    assert upscale_instruction("  ", 1000) == UPSCALE_INSTRUCTION


def test_input_fidelity_is_refused_where_the_model_has_none() -> None:
    request = EditRequest(image=png(), prompt="x", input_fidelity="high")
    check_request(DEFAULT_MODELS["gpt-image-1"], request)
    with pytest.raises(UnsupportedOption, match="input fidelity"):
        check_request(DEFAULT_MODELS["gpt-image-1-mini"], request)
    with pytest.raises(UnsupportedOption, match="input fidelity"):
        check_request(
            DEFAULT_MODELS["gpt-image-1"],
            EditRequest(image=png(), prompt="x", input_fidelity="medium"),
        )
    table = build_model_table(
        {"my-model": {"based_on": "gpt-image-1-mini", "input_fidelity": True}}
    )
    check_request(table["my-model"], request)


async def test_gpt_image_1_mini_upscales_without_input_fidelity(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client: ImagesClient = make_client(model="gpt-image-1-mini", partial_images=0)
    request = UpscaleRequest(
        image=png(768, 512, "RGB", (200, 10, 10)), prompt="a red fox", size="1536x1024"
    )
    result = await client.upscale(request)
    (sent,) = fake_images_api.requests
    assert sent.path == "/v1/images/edits" and sent.body["size"] == "1536x1024"
    assert "input_fidelity" not in sent.body
    assert sent.body["prompt"] == f"{UPSCALE_INSTRUCTION} The image shows: a red fox"
    assert (result.images[0].width, result.images[0].height) == (1536, 1024)
