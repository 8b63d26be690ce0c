"""Every kind of request the client sends validates against OpenAI's published OpenAPI document.

The cases are generated from the default model table, so a model or option added there is
covered here without a new test: each operation the model supports, with only the required
fields and with every optional field it offers (mask included), in base64 and in URL mode.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.providers import (
    DEFAULT_MODELS,
    EditRequest,
    GenerateRequest,
    ImageRequest,
    ModelSpec,
    Operation,
    VaryRequest,
)
from bot.testing.openai_api import FakeImagesAPI, RecordedRequest
from bot.testing.openapi import coerce_multipart_fields, request_validator, resolved_schema
from tests.providers.conftest import MakeClient, png

needs_spec = pytest.mark.skipif(
    request_validator("openai", "/images/generations", "post") is None,
    reason="official OpenAI spec not found at ../shared/specs/openai-openapi.json",
)

_ENDPOINTS = {
    "/v1/images/generations": ("application/json", "CreateImageRequest"),
    "/v1/images/edits": ("multipart/form-data", "CreateImageEditRequest"),
    "/v1/images/variations": ("multipart/form-data", "CreateImageVariationRequest"),
}


def _first(options: tuple[str, ...], prefer: str | None = None) -> str | None:
    if prefer in options:
        return prefer
    return options[0] if options else None


def _full_size(spec: ModelSpec) -> str:
    if spec.free_size is not None:
        return "1536x864"
    return next(s for s in reversed(spec.sizes) if s != spec.default_size)


def _requests(spec: ModelSpec) -> list[tuple[str, ImageRequest]]:
    n = min(2, spec.max_n)
    options: dict[str, Any] = {
        "quality": _first(spec.qualities, "high"),
        "background": _first(spec.backgrounds, "transparent"),
        "output_format": _first(spec.output_formats, "webp"),
    }
    cases: list[tuple[str, ImageRequest]] = []
    if spec.supports(Operation.GENERATE):
        cases.append(("generate-minimal", GenerateRequest("a quiet harbour")))
        full = GenerateRequest(
            "a quiet harbour", n=n, size=_full_size(spec), style=_first(spec.styles, "natural"),
            user_id="123456789012345678", **options,
        )  # fmt: skip
        cases.append(("generate-full", full))
    if spec.supports(Operation.EDIT):
        cases.append(("edit-minimal", EditRequest(png(), "add snow")))
        full_edit = EditRequest(
            png(), "add snow", mask=png(colour=(0, 0, 0, 255)), n=n, size=_full_size(spec),
            user_id="123456789012345678", **options,
        )  # fmt: skip
        cases.append(("edit-full", full_edit))
    if spec.supports(Operation.VARY):
        cases.append(("vary-minimal", VaryRequest(png())))
        full_vary = VaryRequest(png(), n=n, size=_full_size(spec), user_id="123456789012345678")
        cases.append(("vary-full", full_vary))
    return cases


CASES = [
    pytest.param(name, request, url_mode, id=f"{name}-{label}{'-url' if url_mode else ''}")
    for name, spec in DEFAULT_MODELS.items()
    for label, request in _requests(spec)
    for url_mode in (False, True)
]


def _validate(record: RecordedRequest) -> list[str]:
    content_type, schema_name = _ENDPOINTS[record.path]
    path = record.path.removeprefix("/v1")
    validator = request_validator("openai", path, "post", content_type)
    assert validator is not None
    if record.json is not None:
        return validator.errors(record.json)
    fields: dict[str, Any] = dict(record.form)
    fields.update({upload.name: "<binary>" for upload in record.files})
    return validator.errors(coerce_multipart_fields(resolved_schema("openai", schema_name), fields))


@needs_spec
@pytest.mark.parametrize(("model", "request_", "url_mode"), CASES)
async def test_request_matches_the_official_spec(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    model: str,
    request_: ImageRequest,
    url_mode: bool,
) -> None:
    fake_images_api.respond_with_url = url_mode
    client = make_client(model=model)
    if isinstance(request_, GenerateRequest):
        result = await client.generate(request_)
    elif isinstance(request_, EditRequest):
        result = await client.edit(request_)
    else:
        result = await client.vary(request_)

    assert len(result.images) == request_.n
    assert fake_images_api.spec_violations == []
    assert len(fake_images_api.requests) == 1
    record = fake_images_api.requests[0]
    assert _validate(record) == []
    assert record.body["model"] == model  # always sent: the spec's defaults differ per endpoint
    assert bool(fake_images_api.downloads) == url_mode


def test_every_default_model_and_operation_is_covered() -> None:
    covered = {(param.values[0], type(param.values[1]).__name__) for param in CASES}
    for name, spec in DEFAULT_MODELS.items():
        kinds = {"generate": "GenerateRequest", "edit": "EditRequest", "vary": "VaryRequest"}
        for operation in spec.operations:
            assert (name, kinds[operation.value]) in covered
