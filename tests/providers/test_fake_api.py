"""The fake API itself: it must reject what the real one rejects, or other tests prove little."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import pytest

from bot.config import ProviderSettings
from bot.imaging import ImageWorker
from bot.providers import GenerateRequest, ImagesClient, build_model_table
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.openapi import request_validator
from tests.providers.conftest import multipart, png

needs_spec = pytest.mark.skipif(
    request_validator("openai", "/images/generations", "post") is None,
    reason="official OpenAI spec not found at ../shared/specs/openai-openapi.json",
)


async def _post_json(
    session: aiohttp.ClientSession,
    api: FakeImagesAPI,
    body: dict[str, object],
    key: str | None = None,
) -> tuple[int, dict[str, object], Mapping[str, str]]:
    headers = {"Authorization": f"Bearer {key or api.api_key}"}
    async with session.post(f"{api.base_url}/images/generations", json=body, headers=headers) as r:
        return r.status, await r.json(), r.headers.copy()


async def _post_form(
    session: aiohttp.ClientSession, api: FakeImagesAPI, endpoint: str, fields: dict[str, object]
) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {api.api_key}"}
    form = multipart(fields)
    async with session.post(f"{api.base_url}/images/{endpoint}", data=form, headers=headers) as r:
        return r.status, await r.json()


@needs_spec
async def test_spec_violations_are_answered_and_recorded(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    status, body, _ = await _post_json(session, fake_images_api, {"prompt": "x", "n": "ten"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    status, _ = await _post_form(session, fake_images_api, "variations", {"image": png(), "n": 0})
    assert status == 400
    assert len(fake_images_api.spec_violations) == 2
    assert "n" in fake_images_api.spec_violations[1]


async def test_missing_or_wrong_key(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    status, body, _ = await _post_json(
        session, fake_images_api, {"prompt": "x"}, key="sk-nope-1234"
    )
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"prompt": "x", "model": "gpt-image-2", "response_format": "b64_json"},
            "Unknown parameter",
        ),
        ({"prompt": "x", "model": "dall-e-3", "n": 2}, "n=1"),
        ({"prompt": "x", "model": "dall-e-2", "size": "1536x1024"}, "Invalid value: '1536x1024'"),
        ({"prompt": "x" * 1001, "model": "dall-e-2"}, "Maximum length is 1000"),
        ({"prompt": "x", "model": "gpt-image-1", "size": "1536x864"}, "Invalid value"),
        ({"prompt": "x", "model": "gpt-image-2", "size": "1000x1000"}, "Invalid value"),
        ({"prompt": "x", "model": "dall-e-2", "style": "vivid"}, "style"),
        ({"prompt": "x", "model": "dall-e-2", "background": "opaque"}, "GPT image"),
        ({"prompt": "x", "seed": 3}, "Unrecognized request argument"),
    ],
)
async def test_model_rules(
    session: aiohttp.ClientSession,
    fake_images_api: FakeImagesAPI,
    body: dict[str, object],
    message: str,
) -> None:
    status, answer, _ = await _post_json(session, fake_images_api, body)
    assert status == 400
    assert message in answer["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("endpoint", "fields", "message"),
    [
        ("edits", {"model": "dall-e-2", "prompt": "x", "image": png(64, 32)}, "square"),
        ("edits", {"model": "dall-e-2", "prompt": "x", "image": png(), "mask": png(32, 32)},
         "same dimensions"),
        ("edits", {"model": "dall-e-3", "prompt": "x", "image": png()}, "not supported"),
        ("variations", {"model": "gpt-image-2", "image": png()}, "not supported"),
        ("variations", {"model": "dall-e-2", "image": b"not an image"}, "PNG"),
        ("edits", {"model": "gpt-image-1-mini", "prompt": "x", "image": png(),
                   "input_fidelity": "high"}, "input_fidelity"),
        ("edits", {"model": "gpt-image-1", "prompt": "x", "image": png(),
                   "input_fidelity": "medium"}, "input_fidelity"),
    ],
)  # fmt: skip
async def test_image_rules(
    session: aiohttp.ClientSession,
    fake_images_api: FakeImagesAPI,
    endpoint: str,
    fields: dict[str, object],
    message: str,
) -> None:
    status, answer = await _post_form(session, fake_images_api, endpoint, fields)
    assert status == 400
    assert message in answer["error"]["message"]  # type: ignore[index]


async def test_rate_limit_window(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    now = [1000.0]
    fake_images_api.clock = lambda: now[0]
    fake_images_api.images_per_minute = 3
    body = {"prompt": "x", "model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}
    assert (await _post_json(session, fake_images_api, {**body, "n": 2}))[0] == 200
    now[0] += 10
    status, _, headers = await _post_json(session, fake_images_api, {**body, "n": 1})
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "0"
    now[0] += 10
    status, answer, headers = await _post_json(session, fake_images_api, body)
    assert status == 429 and answer["error"]["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert headers["retry-after"] == "40"  # the first two images leave the window at t=1060
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert fake_images_api.count_429 == 1
    now[0] += 40
    assert (await _post_json(session, fake_images_api, body))[0] == 200


async def test_client_paces_itself_under_the_fake_rate_limit(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI, images: ImageWorker
) -> None:
    """The client's retry-after handling, with a sleep that moves the fake's clock."""
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    fake_images_api.clock = lambda: now[0]
    fake_images_api.images_per_minute = 2
    settings = ProviderSettings(base_url=fake_images_api.base_url, api_key=fake_images_api.api_key)
    client = ImagesClient(
        session, settings, build_model_table({}), verify=images.verify_results, sleep=sleep
    )
    for _ in range(4):
        await client.generate(GenerateRequest("x"))
    assert waits == [60.0]
    assert fake_images_api.count_429 == 1


async def test_a_gate_holds_requests_at_the_provider_until_it_opens(
    session: aiohttp.ClientSession, fake_images_api: FakeImagesAPI
) -> None:
    """``gate``: taken and recorded at once, answered when the test opens it."""
    api = fake_images_api
    api.gate = asyncio.Event()
    body = {"prompt": "held", "model": "dall-e-2", "size": "256x256"}
    answer = asyncio.ensure_future(_post_json(session, api, body))
    async with asyncio.timeout(5):
        while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert not answer.done()
    api.gate.set()
    status, payload, _ = await answer
    assert status == 200 and len(payload["data"]) == 1  # type: ignore[arg-type]
