"""The fake's streamed answers: what the real API sends, checked against the spec's events."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from bot.testing.openai_api import FakeImagesAPI
from bot.testing.openapi import schema_validator
from tests.providers.conftest import multipart, png

needs_spec = pytest.mark.skipif(
    schema_validator("openai", "ImageGenStreamEvent") is None,
    reason="official OpenAI spec not found at ../shared/specs/openai-openapi.json",
)


async def _stream(
    session: aiohttp.ClientSession, api: FakeImagesAPI, endpoint: str, body: dict[str, Any]
) -> tuple[int, str, list[tuple[str, dict[str, Any]]]]:
    """Status, content type and the (event, data) pairs of a raw streamed request."""
    headers = {"Authorization": f"Bearer {api.api_key}"}
    if endpoint == "generations":
        kwargs: dict[str, Any] = {"json": body}
    else:
        kwargs = {"data": multipart(body)}
    url = f"{api.base_url}/images/{endpoint}"
    async with session.post(url, headers=headers, **kwargs) as response:
        text = await response.text()
        if response.content_type != "text/event-stream":
            return response.status, response.content_type, [("", json.loads(text))]
    events = []
    for block in text.split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return response.status, response.content_type, events


@needs_spec
async def test_a_streamed_generation_is_partials_then_the_completed_event_with_usage(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    body = {"model": "gpt-image-1", "prompt": "a cat", "stream": True, "partial_images": 3}
    status, kind, events = await _stream(session, fake_images_api, "generations", body)
    assert (status, kind) == (200, "text/event-stream")
    names = [name for name, _ in events]
    assert names == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
    assert [data["partial_image_index"] for _, data in events[:3]] == [0, 1, 2]
    assert all(data["type"] == name for name, data in events)
    assert events[-1][1]["usage"]["output_tokens"] == 1056  # the final image's own tokens
    validator = schema_validator("openai", "ImageGenStreamEvent")
    assert validator is not None
    assert [validator.errors(data) for _, data in events] == [[]] * 4
    assert fake_images_api.spec_violations == []


@needs_spec
async def test_a_streamed_edit_sends_image_edit_events_and_zero_partials_sends_one(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    body = {"model": "gpt-image-1", "prompt": "a hat", "image": png(), "stream": "true"}
    status, _, events = await _stream(session, fake_images_api, "edits", body)
    assert status == 200 and [name for name, _ in events] == ["image_edit.completed"]
    validator = schema_validator("openai", "ImageEditStreamEvent")
    assert validator is not None and validator.errors(events[0][1]) == []


@needs_spec
async def test_stream_is_refused_where_the_real_api_refuses_it(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    dall_e = {"model": "dall-e-2", "prompt": "a cat", "stream": True}
    status, kind, answer = await _stream(session, fake_images_api, "generations", dall_e)
    assert (status, kind) == (400, "application/json")
    assert answer[0][1]["error"]["param"] == "stream"
    too_many = {"model": "gpt-image-1", "prompt": "a cat", "stream": True, "partial_images": 4}
    status, _, answer = await _stream(session, fake_images_api, "generations", too_many)
    assert status == 400 and "partial_images" in answer[0][1]["error"]["message"]
    assert len(fake_images_api.spec_violations) == 1  # the second is the spec's; the first a rule
