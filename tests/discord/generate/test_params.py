"""ℹ️ Params under every result: a private answer with everything needed to make the image
again, on the OpenAI fake and on the fake AUTOMATIC1111 (each image's seed, steps), with the
link back to the result a variation was made from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.harness import (
    Harness,
    a1111_backend,
    field_value,
    job_id_of,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    settings = settings_factory(provider=ProviderSettings(**a1111_backend(a1111)))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []


async def imagine(h: Harness, **options: Any) -> StoredMessage:
    before = seen_ids(h.fake)
    await h.fake.slash("imagine", {"prompt": "a lighthouse at dusk", **options})
    return await new_result(h, before)


async def params_of(h: Harness, result: StoredMessage, **click: Any) -> dict[str, Any]:
    """Click ℹ️ Params on ``result``: the private answer's embed."""
    handle = await h.fake.click(result, f"ib:params:{job_id_of(result)}", **click)
    response = await handle.response()
    assert response.type == 4 and response.ephemeral
    (embed,) = response.data["embeds"]
    return dict(embed)


def fields(embed: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in embed.get("fields") or []}


async def test_params_of_an_openai_result_say_how_it_was_made(harness: Harness) -> None:
    result = await imagine(harness, count=2, size="256x256")
    job = job_id_of(result)
    assert f"ib:params:{job}" in result.custom_ids

    embed = await params_of(harness, result, user=harness.fake.admin)  # not the requester

    assert embed["title"] == f"Parameters of job #{job}"
    assert embed["description"] == "a lighthouse at dusk"
    shown = fields(embed)
    assert shown["Model"] == "dall-e-2"
    assert shown["Size"] == "256x256"
    assert shown["Action"] == "generate"
    assert shown["Backend"] == "default"
    assert shown["Images"] == "2"
    assert shown["Cost"] == field_value(result, "Cost")
    assert "Seed" not in shown and "Steps" not in shown and "Made from" not in shown


async def test_params_of_an_sd_result_give_each_images_seed_and_the_sd_options(
    sd: Harness,
) -> None:
    result = await imagine(
        sd, count=2, negative="blurry, text", steps=12, guidance=6.5, sampler="DPM++ 2M"
    )

    shown = fields(await params_of(sd, result))

    assert shown["Seed"] == field_value(result, "Seed")
    assert shown["Seed"].startswith("1: ") and ", 2: " in shown["Seed"]
    assert shown["Steps"] == "12"
    assert shown["Guidance"] == "6.5"
    assert shown["Sampler"] == "DPM++ 2M"
    assert shown["Negative prompt"] == "blurry, text"


async def test_params_of_a_variation_link_to_the_image_it_was_made_from(
    harness: Harness,
) -> None:
    fake = harness.fake
    first = await imagine(harness, count=2, size="256x256")
    before = seen_ids(fake)
    await fake.click(first, f"ib:vary:{job_id_of(first)}:1")
    variation = await new_result(harness, before)

    shown = fields(await params_of(harness, variation))

    link = f"https://discord.com/channels/{fake.guild.id}/{first.channel_id}/{first.id}"
    assert shown["Made from"] == f"[Image 2 of this result]({link})"
    assert shown["Action"] == "vary"


async def test_params_of_a_variation_whose_source_was_deleted_say_so(harness: Harness) -> None:
    fake = harness.fake
    first = await imagine(harness, count=2, size="256x256")
    before = seen_ids(fake)
    await fake.click(first, f"ib:vary:{job_id_of(first)}:0")
    variation = await new_result(harness, before)
    deleted = await fake.click(first, f"ib:delete:{job_id_of(first)}", user=fake.user)
    await deleted.wait_message(lambda m: m.content == "Deleted.")

    shown = fields(await params_of(harness, variation))

    assert shown["Made from"] == f"Job #{job_id_of(first)} (its result was deleted)"


async def test_params_in_japanese_for_a_japanese_client(harness: Harness) -> None:
    result = await imagine(harness, count=1, size="256x256")

    embed = await params_of(harness, result, locale="ja")

    assert embed["title"] == f"ジョブ #{job_id_of(result)} のパラメーター"
    assert "バックエンド" in fields(embed)


async def test_params_naming_a_job_of_another_server_tell_nothing(harness: Harness) -> None:
    fake = harness.fake
    mine = await imagine(harness, count=1, size="256x256")
    guild = fake.add_guild("Other Server")
    fake.add_channel(guild, "general")
    bob = fake.add_member(guild, "bob", user=fake.user.user)
    before = seen_ids(fake)
    await fake.slash(
        "imagine",
        {"prompt": "a private boat", "count": 1, "size": "256x256"},
        user=bob,
        channel=next(iter(guild.channels)),
    )
    theirs = await new_result(harness, before)

    click = await fake.click(
        mine, f"ib:params:{job_id_of(mine)}", forged_custom_id=f"ib:params:{job_id_of(theirs)}"
    )
    await asyncio.sleep(0.3)
    await harness.idle()

    assert click.response_type is None and click.messages == []
