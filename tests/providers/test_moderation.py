"""The moderation client against the fake /v1/moderations: the wire as the spec has it, the
verdict read from the answer, and the image client's retries and error mapping."""

from __future__ import annotations

import aiohttp
import pytest

from bot.providers import MalformedResponse, OperatorProblem, ProviderUnavailable, RateLimited
from bot.providers.moderation import ModerationClient, ModerationVerdict, verdict_of
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient, RecordingSleep


async def test_a_prompt_is_sent_as_a_string_and_its_flagged_categories_read(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    fake_images_api.moderation.flag("sword", "violence", "illicit/violent")
    client = ModerationClient(make_client(), "omni-moderation-latest")
    verdict = await client.check("a knight with a SWORD")
    assert verdict == ModerationVerdict(True, ("illicit/violent", "violence"))
    assert await client.check("a knight with a flower") == ModerationVerdict(False)
    first, _ = fake_images_api.moderation.calls
    assert first.body == {"model": "omni-moderation-latest", "input": "a knight with a SWORD"}
    assert first.headers["Authorization"] == f"Bearer {fake_images_api.api_key}"
    assert fake_images_api.spec_violations == []


async def test_an_image_goes_as_a_data_url_part_for_omni_models_only(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    image = png_bytes(32, 32)
    omni = ModerationClient(make_client(), "omni-moderation-latest")
    assert omni.takes_images
    assert await omni.check("", image) == ModerationVerdict(False)
    (call,) = fake_images_api.moderation.calls
    assert call.images == [image] and call.texts == []

    text_only = ModerationClient(make_client(), "text-moderation-latest")
    assert not text_only.takes_images
    assert await text_only.check("a cat", image) == ModerationVerdict(False)
    assert fake_images_api.moderation.calls[-1].body["input"] == "a cat"
    assert await text_only.check("  ", image) is None  # nothing it can check: nothing asked
    assert len(fake_images_api.moderation.calls) == 2
    assert fake_images_api.spec_violations == []


async def test_outages_are_retried_like_image_calls_then_raised(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, sleeps: RecordingSleep
) -> None:
    fake_images_api.moderation.fail_next(503, times=3)
    client = ModerationClient(make_client(max_retries=2), "omni-moderation-latest")
    with pytest.raises(ProviderUnavailable):
        await client.check("a cat")
    assert len(fake_images_api.moderation.calls) == 3 and len(sleeps.waits) == 2


async def test_a_429_from_the_moderation_endpoint_holds_no_image_request_back(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    told: list[tuple[str, float]] = []

    async def on_rate_limited(backend: str, seconds: float) -> None:
        told.append((backend, seconds))

    fake_images_api.moderation.fail_next(429, headers={"retry-after": "2"})
    images = make_client(max_retries=0, on_rate_limited=on_rate_limited)
    with pytest.raises(RateLimited):
        await ModerationClient(images, "omni-moderation-latest").check("a cat")
    assert told == []


async def test_a_wrong_key_is_an_operator_problem_without_the_key(
    make_client: MakeClient, fake_images_api: FakeImagesAPI
) -> None:
    wrong = "sk-wrong-key-not-to-be-shown-1234"
    client = ModerationClient(make_client(api_key=wrong), "omni-moderation-latest")
    with pytest.raises(OperatorProblem) as raised:
        await client.check("a cat")
    assert wrong not in str(raised.value) and wrong not in raised.value.detail


def test_an_answer_without_results_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        verdict_of({"id": "modr-1", "model": "omni-moderation-latest"})
    with pytest.raises(MalformedResponse):
        verdict_of({"results": [{"categories": {}}]})
    flagged = {"flagged": True, "categories": {"hate": True, "violence": False}}
    assert verdict_of({"results": [{"flagged": False}, flagged]}) == ModerationVerdict(
        True, ("hate",)
    )


async def test_the_fake_refuses_bodies_the_spec_refuses(fake_images_api: FakeImagesAPI) -> None:
    headers = {"Authorization": f"Bearer {fake_images_api.api_key}"}
    url = fake_images_api.base_url + "/moderations"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, json={"model": "omni-moderation-latest"}, headers=headers
        ) as r:
            assert r.status == 400
        bad_part = {"input": [{"type": "image_url", "image_url": {}}]}
        async with session.post(url, json=bad_part, headers=headers) as r:
            assert r.status == 400
        text_model = {
            "model": "text-moderation-latest",
            "input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
        }
        async with session.post(url, json=text_model, headers=headers) as r:
            assert r.status == 400  # the text models take no images
    assert len(fake_images_api.spec_violations) == 2
    fake_images_api.spec_violations.clear()
