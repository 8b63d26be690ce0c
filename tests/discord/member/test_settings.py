"""/settings show|set|reset end to end: a member's own defaults, used by /imagine for every
option they leave out (what the fake OpenAI and AUTOMATIC1111 servers receive), shown, reset;
refused at once when they cannot hold here, and left out with a note when the server's or the
operator's rules no longer allow them; the server admins' backend choice still wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.quotas.member_defaults import load_defaults, save_defaults
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.discord import FakeDiscord, FakeMember
from bot.testing.harness import ROOMY_QUOTAS, Harness, api_calls, en, run_bot, seen_ids
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI


async def settings(
    h: Harness,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: FakeMember | None = None,
) -> str:
    """/settings <subcommand> as the member (by default); the private answer's text."""
    handle = await h.fake.slash("settings", options, subcommand=subcommand, user=user)
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def imagine(h: Harness, options: dict[str, Any] | None = None) -> list[str]:
    """/imagine as the member, until its result is posted; the private notes it got."""
    before = seen_ids(h.fake)
    handle = await h.fake.slash("imagine", {"prompt": "a lighthouse", **(options or {})})
    await h.result(lambda m: m.id not in before)
    await h.idle()
    status = handle.original
    return [m.content for m in handle.record.messages if m is not status and m.ephemeral]


def last_generation(h: Harness) -> dict[str, Any]:
    body: dict[str, Any] = api_calls(h.api, "generations")[-1].json
    return body


async def test_a_member_without_defaults_is_told_so(harness: Harness) -> None:
    assert await settings(harness, "show") == en(harness, "settings.member.none")


async def test_defaults_are_used_for_the_options_left_out(harness: Harness) -> None:
    text = await settings(harness, "set", {"size": "512x512", "count": 2})

    assert text.splitlines() == [
        "Your defaults are saved.",
        "Your own defaults, used for the options you leave out:",
        "- size: 512x512",
        "- count: 2",
    ]
    assert await imagine(harness) == []
    call = last_generation(harness)
    assert (call["size"], call["n"]) == ("512x512", 2)
    assert (await settings(harness, "show")).splitlines()[1:] == ["- size: 512x512", "- count: 2"]


async def test_options_the_member_types_win_over_their_defaults(harness: Harness) -> None:
    await settings(harness, "set", {"size": "512x512", "count": 2})

    await imagine(harness, {"size": "256x256", "count": 1})

    call = last_generation(harness)
    assert (call["size"], call.get("n", 1)) == ("256x256", 1)


async def test_reset_forgets_one_default_or_all(harness: Harness) -> None:
    await settings(harness, "set", {"size": "512x512", "count": 2})

    one = await settings(harness, "reset", {"setting": "n"})
    assert one.splitlines() == [
        "Your default count is forgotten.",
        "Your own defaults, used for the options you leave out:",
        "- size: 512x512",
    ]
    everything = await settings(harness, "reset")
    assert everything == en(harness, "settings.member.reset_all")

    await imagine(harness)
    call = last_generation(harness)
    assert call.get("n", 1) == 1 and call.get("size") in (None, "1024x1024")
    assert await settings(harness, "show") == en(harness, "settings.member.none")


async def test_defaults_are_each_members_own(harness: Harness) -> None:
    await settings(harness, "set", {"count": 3}, user=harness.fake.admin)

    await imagine(harness)

    assert last_generation(harness).get("n", 1) == 1
    assert await settings(harness, "show") == en(harness, "settings.member.none")


async def test_a_default_the_model_cannot_make_is_refused_when_set(harness: Harness) -> None:
    text = await settings(harness, "set", {"size": "999x999"})

    assert text.startswith("dall-e-2 cannot make 999x999 images")
    assert await settings(harness, "show") == en(harness, "settings.member.none")


async def test_set_without_any_option_says_what_to_do(harness: Harness) -> None:
    text = await settings(harness, "set")

    assert text == "Choose at least one default to set. /settings show lists yours."


@pytest.fixture
async def strict_bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    """The operator allows at most 2 images a request, in 256x256 and 512x512 only."""
    quotas = dataclasses.replace(ROOMY_QUOTAS, max_n=2, allowed_sizes=("256x256", "512x512"))
    async with run_bot(fake_discord, fake_images_api, settings_factory(quotas=quotas)) as h:
        yield h
    assert fake_discord.spec_violations == []


async def test_a_default_the_rules_no_longer_allow_is_left_out_with_a_note(
    strict_bot: Harness,
) -> None:
    h = strict_bot
    # Set while the rules allowed them (another server's, or before the operator changed them).
    await save_defaults(h.bot.storage.sessions, h.fake.user.id, {"n": 4, "size": "1024x1024"})

    notes = await imagine(h)

    assert notes == [
        "Your default size “1024x1024” isn't allowed here now, so this request goes without it.\n"
        "Your default count “4” isn't allowed here now, so this request goes without it."
    ]
    assert last_generation(h).get("n", 1) == 1  # and the size the model makes by default
    # Kept: it may hold again elsewhere or later.
    kept = await load_defaults(h.bot.storage.sessions, h.fake.user.id)
    assert (kept.n, kept.size) == (4, "1024x1024")


async def test_a_default_beyond_the_operators_ceiling_is_refused_when_set(
    strict_bot: Harness,
) -> None:
    text = await settings(strict_bot, "set", {"count": 3})

    assert text == en(strict_bot, "quota.max_n", max_n=2, n=3)


@pytest.fixture
async def a1111() -> AsyncIterator[FakeAutomatic1111]:
    async with FakeAutomatic1111(step_delay=0.001) as fake:
        yield fake


@pytest.fixture
async def sd_bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    a1111: FakeAutomatic1111,
) -> AsyncIterator[Harness]:
    """The default OpenAI backend and "sd" (AUTOMATIC1111), both open to every server."""
    backends = {"sd": ProviderSettings(type="automatic1111", base_url=a1111.base_url, model="")}
    async with run_bot(
        fake_discord, fake_images_api, settings_factory(backends=backends), a1111=a1111
    ) as h:
        yield h
    assert fake_discord.spec_violations == []


def txt2img_calls(a1111: FakeAutomatic1111) -> list[dict[str, Any]]:
    return [body for path, body in a1111.requests if path.endswith("/txt2img")]


async def test_a_default_backend_and_negative_prompt_are_used(
    sd_bot: Harness, a1111: FakeAutomatic1111
) -> None:
    text = await settings(sd_bot, "set", {"backend": "sd", "negative": "blurry, text"})
    assert text.splitlines()[2:] == ["- backend: sd", "- negative prompt: blurry, text"]

    assert await imagine(sd_bot) == []

    (call,) = txt2img_calls(a1111)
    assert call["negative_prompt"] == "blurry, text"
    assert api_calls(sd_bot.api, "generations") == []


async def test_a_negative_prompt_is_refused_for_a_backend_without_one(sd_bot: Harness) -> None:
    text = await settings(sd_bot, "set", {"negative": "blurry"})

    assert "works only on Stable Diffusion backends" in text


async def test_the_backend_the_server_admins_chose_wins_with_a_note(
    sd_bot: Harness, a1111: FakeAutomatic1111
) -> None:
    h = sd_bot
    await settings(h, "set", {"backend": "sd"})
    chose = await settings(h, "server-backend", {"name": "default"}, user=h.fake.admin)
    assert chose.startswith("This server now uses default (openai).")

    notes = await imagine(h)

    assert notes == [
        "Your default backend “sd” isn't allowed here now, so this request goes without it."
    ]
    assert txt2img_calls(a1111) == []
    assert len(api_calls(h.api, "generations")) == 1


async def test_a_default_backend_must_be_enabled_for_the_server(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    elsewhere = ProviderSettings(
        type="automatic1111", base_url="http://127.0.0.1:9", model="", enabled_guilds=(424242,)
    )
    config = settings_factory(backends={"private": elsewhere})
    async with run_bot(fake_discord, fake_images_api, config) as h:
        text = await settings(h, "set", {"backend": "private"})

    assert text == en(h, "settings.backend_not_enabled", name="private", allowed="default")


async def test_defaults_are_used_by_vary_too(harness: Harness) -> None:
    await settings(harness, "set", {"size": "256x256", "count": 2})
    upload = harness.fake.add_attachment(png_bytes(300, 300), "cat.png")
    before = seen_ids(harness.fake)

    await harness.fake.slash("vary", {"image": upload})
    await harness.result(lambda m: m.id not in before)

    (call,) = api_calls(harness.api, "variations")
    assert (call.form["n"], call.form["size"]) == ("2", "256x256")


async def test_a_changed_default_is_used_by_the_very_next_request(harness: Harness) -> None:
    """Defaults are kept between requests (issue 10), but a change is never a few seconds
    late: set, reset one and reset all each hold for the next /imagine."""
    await imagine(harness)  # no defaults, read and kept
    assert last_generation(harness).get("n", 1) == 1

    await settings(harness, "set", {"count": 2})
    await imagine(harness)
    assert last_generation(harness)["n"] == 2

    await settings(harness, "reset", {"setting": "n"})
    await imagine(harness)
    assert last_generation(harness).get("n", 1) == 1

    await settings(harness, "set", {"count": 3})
    await imagine(harness)
    await settings(harness, "reset")
    await imagine(harness)
    assert [call.json.get("n", 1) for call in api_calls(harness.api, "generations")] == [
        1,
        2,
        1,
        3,
        1,
    ]
