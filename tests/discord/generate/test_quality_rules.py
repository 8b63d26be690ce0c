"""The operator's quality rules (``[quotas] default_quality``, ``allowed_qualities``) as members
meet them: the command offers only the allowed qualities, a request without one gets the
operator's default (and is reserved at that price), and an older request for a dearer one is
refused privately, in the member's language, before anything is sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bot.config import Settings
from bot.discord.i18n import Catalog
from bot.testing.discord import FakeDiscord
from bot.testing.harness import (
    ROOMY_QUOTAS,
    api_calls,
    fields,
    job_id_of,
    new_result,
    run_bot,
    seen_ids,
    synced,
)
from bot.testing.openai_api import FakeImagesAPI

CATALOG = Catalog.load()


def on_gpt_image_2(settings_factory: Callable[..., Settings], **quotas: Any) -> Settings:
    return settings_factory(model="gpt-image-2", quotas=dataclasses.replace(ROOMY_QUOTAS, **quotas))


def quality_choices(fake: FakeDiscord, command: str) -> list[str]:
    (quality,) = [o for o in synced(fake, command)["options"] if o["name"] == "quality"]
    return [c["value"] for c in quality["choices"]]


async def test_members_see_only_the_allowed_qualities_and_get_the_first_by_default(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = on_gpt_image_2(settings_factory, allowed_qualities=("low", "medium"))
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        assert quality_choices(fake_discord, "imagine") == ["low", "medium"]
        assert quality_choices(fake_discord, "edit") == ["low", "medium"]
        await fake_discord.slash("imagine", {"prompt": "a lighthouse at dusk"})
        result = await new_result(harness, set())
    (call,) = api_calls(fake_images_api, "generations")
    assert call.json["quality"] == "low"  # not the model's "auto", which may be "high"
    assert fields(result)["Quality"] == "low"
    assert fake_discord.spec_violations == [] and fake_images_api.spec_violations == []


async def test_the_default_quality_is_used_when_the_member_picks_none(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = on_gpt_image_2(settings_factory, default_quality="medium")
    async with run_bot(fake_discord, fake_images_api, settings) as harness:
        assert quality_choices(fake_discord, "imagine") == ["low", "medium", "high", "auto"]
        await fake_discord.slash("imagine", {"prompt": "a lighthouse at dusk"})
        await new_result(harness, set())
        before = seen_ids(fake_discord)
        await fake_discord.slash("imagine", {"prompt": "a red bicycle", "quality": "high"})
        await new_result(harness, before)
    default, chosen = api_calls(fake_images_api, "generations")
    assert default.json["quality"] == "medium"
    assert chosen.json["quality"] == "high"  # the member's choice wins over the default


async def test_a_redo_of_a_dearer_quality_than_now_allowed_is_refused_before_sending(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with run_bot(fake, api, on_gpt_image_2(settings_factory)) as harness:
        await fake.slash("imagine", {"prompt": "a red bicycle", "quality": "high"})
        old = await new_result(harness, set())
    # The operator then caps the quality and restarts; a member presses Redo on the old result.
    capped = on_gpt_image_2(settings_factory, allowed_qualities=("low", "medium"))
    async with run_bot(fake, api, capped):
        click = await fake.click(old, f"ib:redo:{job_id_of(old)}", user=fake.user, locale="ko")
        response = await click.response()
        answer = await click.wait_message(lambda m: m.ephemeral and "high" in m.content)
    assert response.ephemeral
    expected = CATALOG.text("quota.quality", "ko", quality="high", allowed="low, medium")
    assert answer.content == expected
    assert len(api_calls(api, "generations")) == 1  # only the first request was sent
