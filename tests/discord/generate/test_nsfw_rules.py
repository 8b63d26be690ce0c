"""A server's NSFW rules as members meet them: GPT image models get ``moderation: "low"`` only
in the server's age-restricted channels once its admins allow it; results are spoilers where
the admins say so, and Vary and reactions still find their images.

The rules are set with ``/moderation nsfw …`` as the admin, like a server's admins do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeChannel, FakeDiscord, FakeMember, StoredMessage
from bot.testing.harness import (
    Harness,
    a1111_backend,
    api_calls,
    job_id_of,
    make_settings,
    new_result,
    run_bot,
    seen_ids,
)
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI
from tests.discord.backends.conftest import stored_job


@pytest.fixture
async def gpt(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    """The bot on gpt-image-1 (a GPT image model: it takes ``moderation``)."""
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(model="gpt-image-1")
    ) as running:
        yield running
    assert fake_discord.spec_violations == []
    assert fake_images_api.spec_violations == []


async def nsfw_command(h: Harness, subcommand: str, options: dict[str, Any] | None = None) -> str:
    handle = await h.fake.slash(
        "moderation", options, subcommand=f"nsfw {subcommand}", user=h.fake.admin
    )
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def imagine(
    h: Harness,
    channel: FakeChannel | None = None,
    user: FakeMember | None = None,
    **options: Any,
) -> StoredMessage:
    before = seen_ids(h.fake)
    await h.fake.slash(
        "imagine", {"prompt": "a moonlit garden", **options}, channel=channel, user=user
    )
    return await new_result(h, before)


async def test_low_moderation_is_sent_only_in_age_restricted_channels_once_allowed(
    gpt: Harness,
) -> None:
    fake = gpt.fake
    after_dark = fake.add_channel(fake.guild, "after-dark", nsfw=True)

    await imagine(gpt, after_dark)  # not allowed yet: the provider's default
    assert "moderation" not in api_calls(gpt.api, "generations")[-1].body

    await nsfw_command(gpt, "low-moderation", {"allow": True})
    result = await imagine(gpt, after_dark)
    assert api_calls(gpt.api, "generations")[-1].body["moderation"] == "low"
    assert (await stored_job(gpt, job_id_of(result))).moderation == "low"

    result = await imagine(gpt)  # an ordinary channel of the same server
    assert "moderation" not in api_calls(gpt.api, "generations")[-1].body
    assert (await stored_job(gpt, job_id_of(result))).moderation is None

    await nsfw_command(gpt, "low-moderation", {"allow": False})
    await imagine(gpt, after_dark)
    assert "moderation" not in api_calls(gpt.api, "generations")[-1].body


async def test_a_thread_counts_as_its_age_restricted_channel(gpt: Harness) -> None:
    fake = gpt.fake
    after_dark = fake.add_channel(fake.guild, "after-dark", nsfw=True)
    thread = fake.add_thread(after_dark, "night shots")
    await nsfw_command(gpt, "low-moderation", {"allow": True})

    await imagine(gpt, thread)

    assert api_calls(gpt.api, "generations")[-1].body["moderation"] == "low"


async def test_an_edit_never_carries_moderation(gpt: Harness) -> None:
    """The API's edits form has no ``moderation`` field (the spec's CreateImageEditRequest)."""
    fake = gpt.fake
    after_dark = fake.add_channel(fake.guild, "after-dark", nsfw=True)
    await nsfw_command(gpt, "low-moderation", {"allow": True})
    photo = fake.add_attachment(png_bytes(64, 64, hole=(16, 16, 48, 48)), "photo.png")
    before = seen_ids(fake)

    await fake.slash("edit", {"prompt": "a moonlit garden", "image": photo}, channel=after_dark)
    result = await new_result(gpt, before)

    assert "moderation" not in api_calls(gpt.api, "edits")[-1].body
    assert (await stored_job(gpt, job_id_of(result))).moderation is None


async def test_redo_elsewhere_decides_again(gpt: Harness) -> None:
    fake = gpt.fake
    after_dark = fake.add_channel(fake.guild, "after-dark", nsfw=True)
    await nsfw_command(gpt, "low-moderation", {"allow": True})
    first = await imagine(gpt, after_dark)
    assert api_calls(gpt.api, "generations")[-1].body["moderation"] == "low"

    await nsfw_command(gpt, "low-moderation", {"allow": False})
    before = seen_ids(fake)
    await fake.click(first, f"ib:redo:{job_id_of(first)}", user=fake.admin)
    await new_result(gpt, before)

    assert "moderation" not in api_calls(gpt.api, "generations")[-1].body


async def test_dall_e_3_never_gets_moderation(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(model="dall-e-3")
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        after_dark = h.fake.add_channel(h.fake.guild, "after-dark", nsfw=True)
        await nsfw_command(h, "low-moderation", {"allow": True})

        result = await imagine(h, after_dark)

        request = api_calls(h.api, "generations")[-1]
        assert request.body["model"] == "dall-e-3" and "moderation" not in request.body
        assert (await stored_job(h, job_id_of(result))).moderation is None
    assert fake_images_api.spec_violations == []


async def test_spoiler_results_are_spoiler_attachments_and_vary_still_finds_them(
    harness: Harness,
) -> None:
    fake = harness.fake
    text = await nsfw_command(harness, "spoilers", {"on": True, "scope": "channel"})
    assert f"Results are posted as spoilers in: <#{fake.channel.id}>" in text

    result = await imagine(harness, count=2, size="256x256")

    assert sorted(result.files) == ["SPOILER_image_1.png", "SPOILER_image_2.png"]
    assert all(attachment.spoiler for attachment in result.attachments)
    # An embed's image cannot be blurred: the details stay, no embed shows an image.
    assert len(result.embeds) == 1 and "image" not in result.embeds[0]
    assert result.embeds[0]["description"] == "a moonlit garden"

    before = seen_ids(fake)
    await fake.click(result, f"ib:vary:{job_id_of(result)}:1", user=fake.admin)
    varied = await new_result(harness, before)
    sent = harness.api.requests[-1].file("image")
    assert sent is not None and harness.api.requests[-1].path.endswith("/variations")
    assert varied.embeds[0]["title"] == "Variation of image 2"
    assert all(attachment.spoiler for attachment in varied.attachments)


async def test_a_reaction_varies_a_spoiler_result(harness: Harness) -> None:
    fake = harness.fake
    await nsfw_command(harness, "spoilers", {"on": True, "scope": "server"})
    result = await imagine(harness, count=2, size="256x256")
    assert all(attachment.spoiler for attachment in result.attachments)

    before = seen_ids(fake)
    await fake.react(result, "2️⃣", user=fake.admin)
    varied = await new_result(harness, before)

    assert varied.embeds[0]["title"] == "Variation of image 2"
    assert harness.api.requests[-1].path.endswith("/variations")


async def test_spoilers_in_one_channel_leave_the_others_alone(harness: Harness) -> None:
    fake = harness.fake
    after_dark = fake.add_channel(fake.guild, "after-dark", nsfw=True)
    await nsfw_command(harness, "spoilers", {"on": True, "scope": "channel", "channel": after_dark})

    elsewhere = await imagine(harness, size="256x256")
    there = await imagine(harness, after_dark, size="256x256")

    assert list(elsewhere.files) == ["image_1.png"]
    assert "image" in elsewhere.embeds[0]
    assert list(there.files) == ["SPOILER_image_1.png"]


async def test_a_low_moderation_job_failed_over_to_stable_diffusion_is_made_there(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """The fallback's model takes no ``moderation``: the job is sent there without it."""
    async with FakeAutomatic1111(step_delay=0.001) as a1111:
        gpu = ProviderSettings(**a1111_backend(a1111))
        settings = make_settings(
            tmp_path,
            fake_discord,
            fake_images_api,
            model="gpt-image-1",
            backends={"gpu": gpu},
            fallback=("gpu",),
        )
        async with run_bot(fake_discord, fake_images_api, settings, a1111=a1111) as h:
            after_dark = h.fake.add_channel(h.fake.guild, "after-dark", nsfw=True)
            await nsfw_command(h, "low-moderation", {"allow": True})
            h.api.fail_next(503)

            result = await imagine(h, after_dark)

            assert api_calls(h.api, "generations")[-1].body["moderation"] == "low"
            assert [path for path, _ in a1111.requests if "2img" in path] == ["/sdapi/v1/txt2img"]
            job = await stored_job(h, job_id_of(result))
            assert job.backend == "gpu" and len(result.attachments) == 1
    assert fake_discord.spec_violations == []
