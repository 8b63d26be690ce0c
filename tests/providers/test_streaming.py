"""Streamed answers (``stream=true``, ``partial_images``): previews first, then the same result
as without streaming, and every way a stream can fail classified like the others."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from bot.config import ProviderSettings
from bot.providers import (
    DEFAULT_MODELS,
    EditRequest,
    GenerateRequest,
    ProviderUnavailable,
    RateLimited,
    SafetyRejected,
    VaryRequest,
    build_model_table,
    streamed_partials,
)
from bot.providers.errors import MalformedResponse
from bot.providers.progress import ProgressUpdate
from bot.providers.streaming import PARTIAL_IMAGE_TOKENS
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.openapi import schema_validator
from tests.providers.conftest import MakeClient, png

needs_spec = pytest.mark.skipif(
    schema_validator("openai", "ImageGenStreamEvent") is None,
    reason="official OpenAI spec not found at ../shared/specs/openai-openapi.json",
)


class Previews:
    """A progress callback that keeps every update and when it came."""

    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []
        self.times: list[float] = []

    def __call__(self, update: ProgressUpdate) -> None:
        self.updates.append(update)
        self.times.append(time.monotonic())


def _picture(data: bytes | None) -> tuple[str, tuple[int, int]]:
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        return image.format or "", image.size


@needs_spec
async def test_generation_streams_each_partial_as_a_preview_before_the_result(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="gpt-image-1", partial_images=2)
    previews = Previews()
    result = await client.generate(
        GenerateRequest("a lighthouse", size="1536x1024", quality="low"), progress=previews
    )
    sent = fake_images_api.requests[-1].body
    assert sent["stream"] is True and sent["partial_images"] == 2
    assert [u.text for u in previews.updates] == ["partial 1/2", "partial 2/2"]
    assert [round(u.fraction, 3) for u in previews.updates] == [0.333, 0.667]
    assert [_picture(u.preview) for u in previews.updates] == [("PNG", (1536, 1024))] * 2
    assert previews.updates[0].preview != previews.updates[1].preview
    assert len(result.images) == 1 and result.images[0].width == 1536
    assert result.size == "1536x1024" and result.quality == "low"
    assert result.partial_images == 2
    assert fake_images_api.spec_violations == []  # requests and every event the fake sent


async def test_previews_arrive_while_the_image_is_made_not_with_the_result(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.stream_interval = 0.3  # the fake waits that long after each event
    client = make_client(model="gpt-image-1", partial_images=2)
    previews = Previews()
    await client.generate(GenerateRequest("a cat"), progress=previews)
    returned = time.monotonic()
    assert len(previews.times) == 2
    # The first preview was shown at least two waits before the result came back.
    assert returned - previews.times[0] >= 0.55


async def test_streamed_result_is_the_unstreamed_one_plus_the_partials_tokens(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    request = GenerateRequest("a kite", size="1024x1024", quality="medium")
    plain = await make_client(model="gpt-image-2", partial_images=3).generate(request)
    streamed = await make_client(model="gpt-image-2", partial_images=3).generate(
        request, progress=Previews()
    )
    assert plain.images[0].data == streamed.images[0].data
    assert plain.usage is not None and streamed.usage is not None
    extra = 3 * PARTIAL_IMAGE_TOKENS
    assert streamed.usage.output_tokens == plain.usage.output_tokens + extra
    assert streamed.usage.output_image_tokens == plain.usage.output_image_tokens + extra
    assert streamed.usage.total_tokens == plain.usage.total_tokens + extra
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert (plain.partial_images, streamed.partial_images) == (0, 3)


@needs_spec
async def test_edits_and_gpt_variations_stream_image_edit_events(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    client = make_client(model="gpt-image-1.5", partial_images=1)
    previews = Previews()
    edited = await client.edit(
        EditRequest(png(1024, 1024), "add a moon", output_format="jpeg", background="opaque"),
        progress=previews,
    )
    varied = await client.vary(VaryRequest(png(1024, 1024)), progress=previews)
    for request in fake_images_api.requests:
        assert request.form["stream"] == "true" and request.form["partial_images"] == "1"
    assert [_picture(u.preview)[0] for u in previews.updates] == ["JPEG", "PNG"]
    assert edited.images[0].mime_type == "image/jpeg" and varied.partial_images == 1
    assert fake_images_api.spec_violations == []


@pytest.mark.parametrize(
    ("model", "settings", "n", "with_callback"),
    [
        ("gpt-image-1", {"partial_images": 2}, 1, False),  # nobody to show previews to
        ("gpt-image-1", {"partial_images": 0}, 1, True),  # the operator turned them off
        ("gpt-image-1", {"partial_images": 2}, 2, True),  # partials carry no image index
        ("dall-e-2", {"partial_images": 2}, 1, True),  # the model cannot stream
    ],
)
async def test_no_stream_is_asked_for_unless_previews_can_be_shown(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    model: str,
    settings: dict[str, int],
    n: int,
    with_callback: bool,
) -> None:
    previews = Previews()
    client = make_client(model=model, **settings)
    result = await client.generate(
        GenerateRequest("a cat", n=n), progress=previews if with_callback else None
    )
    sent = fake_images_api.requests[-1].body
    assert "stream" not in sent and "partial_images" not in sent
    assert previews.updates == [] and len(result.images) == n and result.partial_images == 0


async def test_a_server_answering_a_stream_with_json_gives_the_image_without_previews(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.ignore_stream = True
    previews = Previews()
    client = make_client(model="gpt-image-1", partial_images=2)
    result = await client.generate(GenerateRequest("a cat", quality="low"), progress=previews)
    assert fake_images_api.requests[-1].body["stream"] is True
    assert len(result.images) == 1 and previews.updates == [] and result.partial_images == 0
    assert result.usage is not None and result.usage.output_tokens == 272  # nothing added


@pytest.mark.parametrize(
    ("drop", "detail"),
    [(False, "ended before the image was complete"), (True, "ClientPayloadError")],
)
async def test_a_stream_cut_before_the_image_fails_as_possibly_billed_without_retry(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, drop: bool, detail: str
) -> None:
    fake_images_api.stream_fails_next(after=1, drop=drop)
    client = make_client(model="gpt-image-1", partial_images=2, max_retries=3)
    previews = Previews()
    with pytest.raises(ProviderUnavailable) as caught:
        await client.generate(GenerateRequest("a cat"), progress=previews)
    assert caught.value.possibly_billed
    assert detail in caught.value.detail
    assert len(previews.updates) == 1  # what came before the cut was shown
    assert len(fake_images_api.requests) == 1  # the image was being made: not asked again


@pytest.mark.parametrize(
    ("code", "kind", "error_type"),
    [
        ("moderation_blocked", "image_generation_user_error", SafetyRejected),
        (None, "server_error", ProviderUnavailable),
    ],
)
async def test_an_error_event_is_classified_like_the_same_error_before_the_stream(
    make_client: MakeClient,
    fake_images_api: FakeImagesAPI,
    code: str | None,
    kind: str,
    error_type: type[Exception],
) -> None:
    fake_images_api.stream_fails_next(after=1, code=code, type=kind, message="Stopped.")
    client = make_client(model="gpt-image-1", partial_images=2, max_retries=3)
    with pytest.raises(error_type) as caught:
        await client.generate(GenerateRequest("a cat"), progress=Previews())
    error = caught.value
    assert getattr(error, "possibly_billed", False)
    assert "stream error event" in getattr(error, "detail", "")
    assert len(fake_images_api.requests) == 1


async def test_errors_before_the_stream_are_json_answers_retried_as_usual(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.fail_next(429, code="rate_limit_exceeded", headers={"retry-after": "1"})
    client = make_client(model="gpt-image-1", partial_images=1, max_retries=1)
    previews = Previews()
    result = await client.generate(GenerateRequest("a cat"), progress=previews)
    assert len(fake_images_api.requests) == 2 and len(previews.updates) == 1
    assert result.partial_images == 1
    fake_images_api.fail_next(429, code="rate_limit_exceeded", times=2)
    with pytest.raises(RateLimited):
        await client.generate(GenerateRequest("a cat"), progress=previews)


async def test_a_failing_progress_callback_never_fails_the_request(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    async def broken(update: ProgressUpdate) -> None:
        raise RuntimeError("the status message is gone")

    client = make_client(model="gpt-image-1", partial_images=3)
    result = await client.generate(GenerateRequest("a cat"), progress=broken)
    assert len(result.images) == 1 and result.partial_images == 3


async def test_a_streamed_image_that_is_no_image_is_refused_like_an_answer(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.not_image_next()  # the completed event's image is a GIF header
    client = make_client(model="gpt-image-1", partial_images=1)
    with pytest.raises(MalformedResponse):
        await client.generate(GenerateRequest("a cat"), progress=Previews())


async def test_a_stream_larger_than_max_response_mb_is_refused(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.noise_bits = 8  # incompressible: each picture is megabytes
    client = make_client(model="gpt-image-1", partial_images=3, max_response_mb=1)
    with pytest.raises(MalformedResponse) as caught:
        await client.generate(GenerateRequest("a cat", size="1024x1024"), progress=Previews())
    assert "answer larger than 1048576 bytes" in caught.value.detail


def test_the_partials_a_request_is_reserved_for_are_those_it_would_stream() -> None:
    three = ProviderSettings(partial_images=3)
    assert streamed_partials(DEFAULT_MODELS["gpt-image-1"], three, 1) == 3
    assert streamed_partials(DEFAULT_MODELS["gpt-image-1"], three, 2) == 0
    assert streamed_partials(DEFAULT_MODELS["dall-e-3"], three, 1) == 0
    assert streamed_partials(DEFAULT_MODELS["gpt-image-2"], ProviderSettings(), 1) == 1
    local = build_model_table({"local": {"based_on": "gpt-image-1", "streams": False}})
    assert streamed_partials(local["local"], three, 1) == 0


@needs_spec
async def test_a_free_size_of_gpt_image_2_streams_at_that_size(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    previews = Previews()
    client = make_client(model="gpt-image-2", partial_images=1)
    result = await client.generate(
        GenerateRequest("a wide sea", size="1536x864"), progress=previews
    )
    assert _picture(previews.updates[0].preview) == ("PNG", (1536, 864))
    assert result.size == "1536x864" and (result.images[0].width, result.images[0].height) == (
        1536,
        864,
    )
    assert fake_images_api.spec_violations == []
