"""The model table, operator overrides, pre-flight checks and the choices offered to members."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConfigError
from bot.providers import (
    DEFAULT_MODELS,
    EditRequest,
    GenerateRequest,
    InputImageRejected,
    InvalidRequest,
    Operation,
    PromptTooLong,
    TooManyImages,
    UnsupportedOperation,
    UnsupportedOption,
    UnsupportedSize,
    VaryRequest,
    build_model_table,
    check_request,
    option_choices,
)
from tests.providers.conftest import png

D2, D3, G2 = DEFAULT_MODELS["dall-e-2"], DEFAULT_MODELS["dall-e-3"], DEFAULT_MODELS["gpt-image-2"]


def test_default_table_has_the_spec_models() -> None:
    assert set(DEFAULT_MODELS) == {
        "dall-e-2",
        "dall-e-3",
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
    }
    assert D2.native_variations and D2.response_format and D2.max_n == 10
    assert D3.operations == {Operation.GENERATE} and D3.max_n == 1 and D3.styles
    assert not G2.response_format and not G2.native_variations and G2.max_prompt_chars == 32000
    assert DEFAULT_MODELS["gpt-image-1"].free_size is None
    # ``moderation`` low|auto: the GPT image models' generations, never dall-e's
    assert all(DEFAULT_MODELS[name].moderation for name in DEFAULT_MODELS if "gpt" in name)
    assert not D2.moderation and not D3.moderation


@pytest.mark.parametrize(
    ("size", "allowed"),
    [
        ("1024x1024", True),
        ("auto", True),
        ("1536x864", True),
        ("3840x2160", True),
        ("2160x3840", True),
        ("3840x1280", True),  # exactly 3:1
        ("3840x1264", False),  # wider than 3:1
        ("1000x1000", False),  # not multiples of 16
        ("3856x2160", False),  # edge too long
        ("3072x3072", False),  # too many pixels
        ("0x0", False),
        ("big", False),
    ],
)
def test_gpt_image_2_size_rule(size: str, allowed: bool) -> None:
    assert G2.allows_size(size) is allowed


def test_other_models_only_allow_listed_sizes() -> None:
    assert D2.allows_size("512x512") and not D2.allows_size("1536x864")
    assert not DEFAULT_MODELS["gpt-image-1"].allows_size("1536x864")


# --- overrides ---------------------------------------------------------------------------------


def test_override_changes_only_given_keys() -> None:
    table = build_model_table({"dall-e-2": {"max_n": 4, "sizes": ["512x512"]}})
    assert table["dall-e-2"].max_n == 4
    assert table["dall-e-2"].sizes == ("512x512",)
    assert table["dall-e-2"].native_variations
    assert DEFAULT_MODELS["dall-e-2"].max_n == 10  # defaults untouched


def test_a_compatible_model_can_say_it_takes_moderation() -> None:
    table = build_model_table({"my-gpt": {"based_on": "dall-e-2", "moderation": True}})
    assert table["my-gpt"].moderation and not table["dall-e-2"].moderation


def test_new_model_based_on_default() -> None:
    table = build_model_table(
        {"local-sd": {"based_on": "dall-e-2", "max_prompt_chars": 2000, "accepts_user": False}}
    )
    spec = table["local-sd"]
    assert spec.name == "local-sd" and spec.native_variations and spec.max_prompt_chars == 2000
    assert not spec.accepts_user
    assert "dall-e-2" in table


def test_new_model_from_scratch() -> None:
    table = build_model_table(
        {
            "flux": {
                "operations": ["generate", "edit", "vary"],
                "sizes": ["1024x1024", "auto"],
                "free_size": {"multiple": 32, "max_edge": 2048},
                "max_n": 4,
                "qualities": ["fast", "best"],
                "response_format": False,
                "edit_input": {"formats": ["png", "jpeg"], "max_bytes": 20_000_000},
            }
        }
    )
    spec = table["flux"]
    assert spec.operations == set(Operation)
    assert spec.free_size is not None and spec.free_size.multiple == 32
    assert spec.allows_size("1024x2048") and not spec.allows_size("1040x1040")
    assert spec.edit_input.formats == {"png", "jpeg"} and spec.edit_input.square
    assert spec.max_n == 4 and spec.qualities == ("fast", "best")


def test_a_model_name_as_long_as_the_ledger_keeps_is_taken() -> None:
    name = "org/" + "m" * 60
    assert build_model_table({name: {"based_on": "dall-e-2"}})[name].name == name


def test_free_size_false_removes_the_rule() -> None:
    table = build_model_table({"gpt-image-2": {"free_size": False}})
    assert not table["gpt-image-2"].allows_size("1536x864")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"my-model": {"based_on": "dall-e-2", "max_n": 11}}, "provider.models.my-model.max_n: "
         "must be an integer between 1 and 10"),
        ({"my-model": {"based_on": "dall-e-2", "max_n": "3"}}, "provider.models.my-model.max_n: "
         "must be an integer between 1 and 10"),
        ({"my-model": {"based_on": "dall-e-2", "max_n": True}}, "my-model.max_n: must be an"),
        ({"dall-e-2": {"colour": "red"}}, "provider.models.dall-e-2.colour: unknown key"),
        ({"x": {"based_on": "nope"}}, "provider.models.x.based_on: must name a default model"),
        ({"x": {"sizes": ["1024x1024"]}}, "provider.models.x.operations: required for a new model"),
        ({"x": {"operations": ["generate"]}}, "provider.models.x.sizes: required"),
        ({"x": {"based_on": "dall-e-2", "operations": ["paint"]}}, "x.operations: 'paint' is not"),
        ({"x": {"based_on": "dall-e-2", "operations": []}}, "x.operations: must not be empty"),
        ({"x": {"based_on": "dall-e-2", "sizes": ["huge"]}}, "x.sizes: 'huge' is not"),
        ({"x": {"based_on": "dall-e-2", "sizes": "1024x1024"}}, "x.sizes: must be a list"),
        ({"x": {"based_on": "dall-e-2", "output_formats": ["gif"]}}, "x.output_formats: 'gif'"),
        ({"x": {"based_on": "dall-e-2", "native_variations": "yes"}}, "must be true or false"),
        ({"x": {"based_on": "dall-e-2", "vary_prompt": " "}}, "x.vary_prompt: must be a non-empty"),
        ({"x": {"based_on": "dall-e-2", "default_size": "512x768"}}, "x.default_size: '512x768'"),
        ({"x": {"based_on": "gpt-image-2", "free_size": {"ratio": 2}}}, "size.ratio: unknown"),
        ({"x": {"based_on": "gpt-image-2", "free_size": 3}}, "x.free_size: must be a table"),
        ({"x": {"based_on": "dall-e-2", "edit_input": {"max_bytes": 0}}}, "x.edit_input.max_bytes"),
        ({"x": {"based_on": "dall-e-3", "operations": ["generate", "vary"]}}, 'ons: "vary"'),
        ({"x": "dall-e-2"}, "provider.models.x: must be a table"),
        ({"x": {"based_on": "gpt-image-2", "max_prompt_chars": 10}}, "x.vary_prompt: longer"),
        ({"m" * 65: {"based_on": "dall-e-2"}}, "m: a model's name is at most 64 characters"),
    ],
)  # fmt: skip
def test_override_errors_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model_table(overrides)
    assert message in str(info.value)


# --- pre-flight checks -------------------------------------------------------------------------


def test_check_accepts_valid_requests() -> None:
    check_request(G2, GenerateRequest("cat", n=10, size="1536x864", quality="high"))
    check_request(D3, GenerateRequest("cat", size="1792x1024", quality="hd", style="natural"))
    check_request(D2, EditRequest(png(), "cat", mask=png(), size="256x256"))
    check_request(D2, VaryRequest(png(), n=3, size="512x512"))
    check_request(G2, VaryRequest(png(100, 60)))


@pytest.mark.parametrize(
    ("spec", "request_", "error", "text"),
    [
        (D3, EditRequest(png(), "x"), UnsupportedOperation, "dall-e-3 cannot edit images"),
        (D3, VaryRequest(png()), UnsupportedOperation, "dall-e-3 cannot vary images"),
        (D2, GenerateRequest("x", size="1536x864"), UnsupportedSize,
         "sizes: 256x256, 512x512, 1024x1024"),
        (G2, GenerateRequest("x", size="1000x1000"), UnsupportedSize, "multiples of 16"),
        (D3, GenerateRequest("x", n=2), TooManyImages, "between 1 and 1 images"),
        (D2, GenerateRequest("x", n=0), TooManyImages, "not 0"),
        (D2, GenerateRequest("x", quality="hd"), UnsupportedOption, 'quality "hd"; choose one of: '
         "standard"),
        (D2, GenerateRequest("x", style="vivid"), UnsupportedOption, "none (leave it out)"),
        (D3, GenerateRequest("x", background="transparent"), UnsupportedOption, "background"),
        (D2, GenerateRequest("x", output_format="webp"), UnsupportedOption, "output format"),
        (G2, GenerateRequest("x", background="transparent", output_format="jpeg"),
         UnsupportedOption, "transparent background needs"),
        (G2, EditRequest(png(), "x", quality="standard"), UnsupportedOption, "quality"),
        (D3, GenerateRequest("x", moderation="low"), UnsupportedOption,
         'moderation "low"; choose one of: none'),
        (G2, GenerateRequest("x", moderation="lax"), UnsupportedOption, "low, auto"),
        (D2, GenerateRequest("x" * 1001), PromptTooLong, "1001 characters long; dall-e-2 accepts "
         "at most 1000"),
        (D3, GenerateRequest("x" * 4001), PromptTooLong, "at most 4000"),
        (D2, GenerateRequest("   "), InvalidRequest, "the prompt is empty"),
        (D2, EditRequest(png(64, 32), "x"), InputImageRejected, "must be square"),
        (D2, VaryRequest(b"GIF89a...."), InputImageRejected, "it must be png"),
        (D2, VaryRequest(png() + b"\0" * 4_000_000), InputImageRejected, "smaller than 4000000"),
        (D2, EditRequest(png(), "x", mask=png(32, 32)), InputImageRejected, "image's dimensions"),
        (G2, EditRequest(png(), "x", mask=b"\xff\xd8\xff..."), InputImageRejected, "mask"),
    ],
)  # fmt: skip
def test_check_rejects_with_a_useful_message(
    spec: Any, request_: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as info:
        check_request(spec, request_)
    assert isinstance(info.value, InvalidRequest)
    assert text in str(info.value), str(info.value)


def test_size_error_lists_sizes_and_keeps_params_for_translation() -> None:
    with pytest.raises(UnsupportedSize) as info:
        check_request(D2, GenerateRequest("x", size="2048x2048"))
    assert info.value.key == "provider.unsupported_size"
    assert info.value.params["allowed"] == "256x256, 512x512, 1024x1024"
    assert info.value.params["size"] == "2048x2048"


def test_option_choices_per_operation() -> None:
    generate = option_choices(D3, Operation.GENERATE)
    assert generate.styles == ("vivid", "natural") and generate.max_n == 1
    assert generate.sizes == ("1024x1024", "1792x1024", "1024x1792")
    assert generate.custom_sizes is None
    edit = option_choices(G2, Operation.EDIT)
    assert edit.styles == () and edit.backgrounds and edit.custom_sizes
    vary = option_choices(D2, Operation.VARY)
    assert vary.qualities == () and vary.max_n == 10
    with pytest.raises(UnsupportedOperation):
        option_choices(D3, Operation.VARY)


def test_input_fidelity_is_taken_by_the_gpt_image_models_but_mini() -> None:
    mini = DEFAULT_MODELS["gpt-image-1-mini"]
    assert G2.input_fidelity and DEFAULT_MODELS["gpt-image-1"].input_fidelity
    assert not mini.input_fidelity and not D2.input_fidelity
    check_request(G2, EditRequest(png(), "x", input_fidelity="low"))
    for spec, value in ((mini, "high"), (D2, "high"), (G2, "medium")):
        with pytest.raises(UnsupportedOption) as info:
            check_request(spec, EditRequest(png(), "x", input_fidelity=value))
        assert info.value.params["option"] == "input fidelity"


def test_input_fidelity_can_be_set_for_a_model_of_the_operator() -> None:
    table = build_model_table({"my-edit": {"based_on": "gpt-image-1-mini", "input_fidelity": True}})
    assert table["my-edit"].input_fidelity
