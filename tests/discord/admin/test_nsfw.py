"""/moderation nsfw end to end: a server's admins set its NSFW rules and read them back; the
negative prompt reaches every Stable Diffusion request (AUTOMATIC1111, ComfyUI) and the job
row (what Params shows); members cannot change anything.

What the rules do to GPT image requests and to results: tests/discord/generate/test_nsfw_rules.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeDiscord, FakeMember
from bot.testing.discord.payloads import P
from bot.testing.harness import (
    Harness,
    a1111_backend,
    comfyui_backend,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
    synced,
)
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job

TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}
NOTHING_SET = [
    "Low moderation of GPT image models in age-restricted channels: not allowed "
    "(the provider's default everywhere)",
    "Results are posted as spoilers: nowhere",
    "Negative prompt added to every Stable Diffusion request: none",
]


async def nsfw(
    h: Harness,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: FakeMember | None = None,
    locale: str | None = None,
) -> str:
    """/moderation nsfw <subcommand> as the admin (by default); the private answer's text."""
    handle = await h.fake.slash(
        "moderation",
        options,
        subcommand=f"nsfw {subcommand}",
        user=user or h.fake.admin,
        locale=locale,
    )
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as server:
        yield server


@pytest.fixture
async def sd(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, fake_discord, fake_images_api, **a1111_backend(a1111))
    async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as running:
        yield running
    assert fake_discord.spec_violations == []


def txt2img_bodies(a1111: FakeAutomatic1111) -> list[dict[str, Any]]:
    return [body for path, body in a1111.requests if path.endswith("txt2img")]


async def test_the_command_is_for_server_managers_and_translated(harness: Harness) -> None:
    command = synced(harness.fake, "moderation")
    assert command["default_member_permissions"] == str(int(P.MANAGE_GUILD))
    (group,) = [o for o in command["options"] if o["name"] == "nsfw"]
    assert group["type"] == 2 and set(group["name_localizations"]) == TRANSLATED
    names = {sub["name"] for sub in group["options"]}
    assert names == {"rules", "low-moderation", "spoilers", "negative-prompt"}
    for sub in group["options"]:
        assert set(sub["name_localizations"]) == TRANSLATED


async def test_a_new_server_has_no_nsfw_rules(harness: Harness) -> None:
    assert (await nsfw(harness, "rules")).splitlines() == NOTHING_SET


async def test_each_change_answers_with_the_rules_in_force(harness: Harness) -> None:
    fake = harness.fake
    art = fake.add_channel(fake.guild, "art")

    text = await nsfw(harness, "low-moderation", {"allow": True})
    assert text.splitlines()[0] == (
        "Low moderation of GPT image models in age-restricted channels: allowed"
    )
    text = await nsfw(harness, "spoilers", {"on": True, "scope": "channel", "channel": art})
    assert text.splitlines()[1] == f"Results are posted as spoilers in: <#{art.id}>"
    text = await nsfw(harness, "spoilers", {"on": True, "scope": "channel"})  # this channel
    channels = ", ".join(f"<#{c}>" for c in sorted((art.id, fake.channel.id)))
    assert text.splitlines()[1] == f"Results are posted as spoilers in: {channels}"
    text = await nsfw(harness, "spoilers", {"on": True, "scope": "server"})
    assert text.splitlines()[1] == "Results are posted as spoilers: everywhere in this server"
    text = await nsfw(harness, "negative-prompt", {"text": "lowres, *gore*"})
    assert text.splitlines()[2] == (
        "Negative prompt added to every Stable Diffusion request: lowres, \\*gore\\*"
    )

    assert (await nsfw(harness, "rules")).splitlines() == text.splitlines()

    await nsfw(harness, "low-moderation", {"allow": False})
    await nsfw(harness, "spoilers", {"on": False, "scope": "server"})
    await nsfw(harness, "spoilers", {"on": False, "scope": "channel", "channel": art})
    await nsfw(harness, "spoilers", {"on": False, "scope": "channel"})
    text = await nsfw(harness, "negative-prompt", {"clear": True})
    assert text.splitlines() == NOTHING_SET


async def test_negative_prompt_text_and_clear_together_are_refused(harness: Harness) -> None:
    await nsfw(harness, "negative-prompt", {"text": "lowres"})

    text = await nsfw(harness, "negative-prompt", {"text": "blurry", "clear": True})

    assert text == "Give either a new negative prompt or clear, not both."
    assert "lowres" in await nsfw(harness, "negative-prompt")  # unchanged, and shown


async def test_answers_are_in_the_admins_language(harness: Harness) -> None:
    text = await nsfw(harness, "low-moderation", {"allow": True}, locale="ja")
    assert text.splitlines()[0] == "年齢制限チャンネルでのGPT画像モデルの弱いモデレーション：許可"


async def test_a_member_cannot_use_it(harness: Harness) -> None:
    with pytest.raises(PermissionError):  # Discord does not even offer it
        await harness.fake.slash(
            "moderation", {"allow": True}, subcommand="nsfw low-moderation", user=harness.fake.user
        )


async def test_the_permission_is_checked_again_when_it_runs(harness: Harness) -> None:
    # A server may open the command to everyone in its Integrations settings.
    synced(harness.fake, "moderation")["default_member_permissions"] = None

    text = await nsfw(harness, "spoilers", {"on": True, "scope": "server"}, user=harness.fake.user)

    assert text == "You need the Manage Server permission(s) to do that."
    assert (await nsfw(harness, "rules")).splitlines() == NOTHING_SET


async def test_the_negative_prompt_is_added_on_automatic1111_and_kept_in_the_job(
    sd: Harness, a1111: FakeAutomatic1111
) -> None:
    fake = sd.fake
    await nsfw(sd, "negative-prompt", {"text": "lowres, watermark"})

    before = seen_ids(fake)
    await fake.slash("imagine", {"prompt": "a koi pond", "negative": "fog"})
    first = await new_result(sd, before)
    assert txt2img_bodies(a1111)[-1]["negative_prompt"] == "fog, lowres, watermark"
    assert (await stored_job(sd, job_id_of(first))).negative_prompt == "fog, lowres, watermark"

    before = seen_ids(fake)
    await fake.slash("imagine", {"prompt": "a koi pond"})
    await new_result(sd, before)
    assert txt2img_bodies(a1111)[-1]["negative_prompt"] == "lowres, watermark"

    # Redo sends the job's own (which has it already): not added twice.
    before = seen_ids(fake)
    await fake.click(first, f"ib:redo:{job_id_of(first)}", user=fake.user)
    await new_result(sd, before)
    assert txt2img_bodies(a1111)[-1]["negative_prompt"] == "fog, lowres, watermark"

    await nsfw(sd, "negative-prompt", {"clear": True})
    before = seen_ids(fake)
    await fake.slash("imagine", {"prompt": "a koi pond"})
    await new_result(sd, before)
    assert txt2img_bodies(a1111)[-1].get("negative_prompt", "") == ""


async def test_the_negative_prompt_is_added_on_comfyui(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    async with FakeComfyUI(step_delay=0.001) as comfy:
        settings = make_settings(tmp_path, fake_discord, fake_images_api, **comfyui_backend(comfy))
        async with run_bot(fake_discord, fake_images_api, settings) as h:
            await nsfw(h, "negative-prompt", {"text": "lowres"})
            before = seen_ids(h.fake)
            await h.fake.slash("imagine", {"prompt": "a koi pond", "negative": "fog"})
            await new_result(h, before)

            assert comfy.sent_inputs("imagebot:negative")["text"] == "fog, lowres"
    assert fake_discord.spec_violations == []


async def test_openai_requests_never_carry_it(harness: Harness) -> None:
    await nsfw(harness, "negative-prompt", {"text": "lowres"})
    before = seen_ids(harness.fake)
    await harness.fake.slash("imagine", {"prompt": "a koi pond", "size": "256x256"})
    result = await new_result(harness, before)

    assert "lowres" not in str(harness.api.requests[-1].body)
    assert (await stored_job(harness, job_id_of(result))).negative_prompt == ""
