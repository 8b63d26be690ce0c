"""The shape uploads are normalized to, chosen from the model's capabilities (issue 11, item 6)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.generation import input_size, nearest_shape, shape_spec
from bot.providers import DEFAULT_MODELS, FreeSizeRule

GPT_FIXED = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"]


@pytest.mark.parametrize("model", GPT_FIXED)
@pytest.mark.parametrize(
    ("source", "shape"),
    [
        ((4000, 3000), (1536, 1024)),
        ((6000, 4000), (1536, 1024)),
        ((3000, 4000), (1024, 1536)),
        ((1080, 1920), (1024, 1536)),
        ((2000, 2000), (1024, 1024)),
        ((1100, 1000), (1024, 1024)),  # nearly square: square is nearer than 3:2
    ],
)
def test_fixed_size_gpt_models_take_the_nearest_listed_shape(
    model: str, source: tuple[int, int], shape: tuple[int, int]
) -> None:
    assert input_size(DEFAULT_MODELS[model], None, source) == shape
    assert input_size(DEFAULT_MODELS[model], "auto", source) == shape


@pytest.mark.parametrize("source", [(4000, 3000), (3000, 4000), (500, 500)])
@pytest.mark.parametrize(("size", "side"), [(None, 1024), ("512x512", 512), ("256x256", 256)])
def test_dall_e_2_stays_square_at_the_output_side(
    source: tuple[int, int], size: str | None, side: int
) -> None:
    assert input_size(DEFAULT_MODELS["dall-e-2"], size, source) == (side, side)


def test_a_chosen_size_wins_over_the_upload_shape() -> None:
    spec = DEFAULT_MODELS["gpt-image-1"]
    assert input_size(spec, "1024x1536", (4000, 3000)) == (1024, 1536)
    assert input_size(spec, "1024x1024", (4000, 3000)) == (1024, 1024)


@pytest.mark.parametrize(
    "source", [(4000, 3000), (3000, 4000), (6000, 4000), (1920, 1080), (10000, 1000), (999, 998)]
)
def test_gpt_image_2_gets_multiples_of_16_within_its_limits(source: tuple[int, int]) -> None:
    spec = DEFAULT_MODELS["gpt-image-2"]
    width, height = input_size(spec, None, source)
    assert spec.allows_size(f"{width}x{height}")
    assert width % 16 == 0 and height % 16 == 0
    assert max(width, height) <= 3 * min(width, height)
    assert 0.8 * 1024 * 1024 <= width * height <= 1024 * 1024 * 1.05  # about 1024x1024's worth
    wanted = min(max(source[0] / source[1], 1 / 3), 3)
    assert abs(width / height - wanted) / wanted < 0.03  # the upload's own shape


def test_gpt_image_2_fits_a_chosen_free_size_at_upload_resolution() -> None:
    width, height = input_size(DEFAULT_MODELS["gpt-image-2"], "3840x2160", (4000, 3000))
    assert height == 1024 and width % 16 == 0
    assert abs(width / height - 16 / 9) < 0.01


def test_an_allowed_input_keeps_its_size_so_a_second_normalization_changes_nothing() -> None:
    for model in ["gpt-image-1", "gpt-image-2"]:
        spec = DEFAULT_MODELS[model]
        for source in [(4000, 3000), (3000, 4000), (1700, 1000)]:
            once = input_size(spec, None, source)
            assert input_size(spec, None, once) == once
            assert nearest_shape(spec, once) == once


def test_a_shrunk_input_asks_for_the_shape_it_has() -> None:
    # The encoder shrinks a PNG over 4 MB keeping its shape: 1536x1024 becomes 1024x683.
    assert nearest_shape(DEFAULT_MODELS["gpt-image-1"], (1024, 683)) == (1536, 1024)


def test_an_operator_rule_with_another_multiple_still_gives_imaging_multiples_of_16() -> None:
    spec = dataclasses.replace(
        DEFAULT_MODELS["gpt-image-2"], sizes=("auto",), free_size=FreeSizeRule(multiple=8)
    )
    width, height = input_size(spec, None, (4000, 3000))
    assert width % 16 == 0 and height % 16 == 0 and spec.allows_size(f"{width}x{height}")


def test_the_operators_allowed_sizes_bound_the_shape() -> None:
    gpt_image_1, gpt_image_2 = DEFAULT_MODELS["gpt-image-1"], DEFAULT_MODELS["gpt-image-2"]
    square_only = shape_spec(gpt_image_1, ("1024x1024",))
    assert input_size(square_only, None, (4000, 3000)) == (1024, 1024)
    assert nearest_shape(square_only, (1536, 1024)) == (1024, 1024)
    # Free sizes are off too: only listed sizes the operator named remain.
    assert input_size(shape_spec(gpt_image_2, ("1024x1024", "1024x1536")), None, (3000, 4000)) == (
        1024,
        1536,
    )
    nothing_left = shape_spec(gpt_image_1, ("256x256",))
    assert nearest_shape(nothing_left, (4000, 3000)) is None
    assert input_size(nothing_left, None, (4000, 3000)) == (1024, 1024)
    assert shape_spec(DEFAULT_MODELS["dall-e-2"], ("512x512",)) == DEFAULT_MODELS["dall-e-2"]
