"""/settings server-backend end to end: a server's admins choose its image backend among those
the operator enabled for it, and see which one is in use; members cannot (/settings is
everyone's, for their own defaults, so Manage Server is checked when the subcommand runs).

Three backends: the default OpenAI one, "sd" (AUTOMATIC1111, for every server) and "private"
(AUTOMATIC1111, enabled only for another server). Answers are private, as with /quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import select

from bot.config import ProviderSettings, Settings
from bot.db.models import GuildSettings
from bot.testing.discord import FakeDiscord, FakeMember
from bot.testing.harness import Harness, en, run_bot, synced
from bot.testing.openai_api import FakeImagesAPI

TRANSLATED = {"ko", "ja", "zh-CN", "zh-TW"}
ELSEWHERE = 424242  # a server id that is not the fake's


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Harness]:
    a1111 = "http://127.0.0.1:9"  # never asked: choosing a backend sends nothing to it
    backends = {
        "sd": ProviderSettings(type="automatic1111", base_url=a1111, model=""),
        "private": ProviderSettings(
            type="automatic1111", base_url=a1111, model="", enabled_guilds=(ELSEWHERE,)
        ),
    }
    async with run_bot(fake_discord, fake_images_api, settings_factory(backends=backends)) as h:
        yield h
    assert fake_discord.spec_violations == []


async def backend_command(
    h: Harness, name: str | None = None, *, user: FakeMember | None = None
) -> str:
    """/settings server-backend [name] as the admin (by default); the private answer's text."""
    options = {"name": name} if name is not None else None
    handle = await h.fake.slash(
        "settings", options, subcommand="server-backend", user=user or h.fake.admin
    )
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def stored_backend(h: Harness) -> str | None:
    async with h.bot.storage.sessions() as session:
        return await session.scalar(
            select(GuildSettings.backend).where(GuildSettings.guild_id == h.fake.guild.id)
        )


async def test_server_backend_is_a_translated_subcommand_of_everyones_settings(
    bot: Harness,
) -> None:
    command = synced(bot.fake, "settings")
    assert command.get("default_member_permissions") is None  # members set their own defaults
    assert command.get("contexts") == [0]  # servers only
    assert set(command["name_localizations"]) == TRANSLATED
    subs = {sub["name"]: sub for sub in command["options"]}
    assert set(subs) == {"show", "set", "reset", "server-backend"}
    sub = subs["server-backend"]
    assert set(sub["name_localizations"]) == TRANSLATED
    (option,) = sub["options"]
    assert option["name"] == "name" and option["autocomplete"] and not option.get("required")


async def test_an_openai_only_bot_has_no_server_backend_to_choose(harness: Harness) -> None:
    subs = {sub["name"] for sub in synced(harness.fake, "settings")["options"]}
    assert subs == {"show", "set", "reset"}


async def test_the_admin_sees_the_backend_in_use_and_those_enabled_here(bot: Harness) -> None:
    text = await backend_command(bot)

    assert text.splitlines() == [
        "Backend in use: default (openai)",
        "Backends this server may use: default (openai), sd (automatic1111)",
    ]


async def test_the_admin_chooses_a_backend(bot: Harness) -> None:
    text = await backend_command(bot, "sd")

    assert text.splitlines()[:2] == [
        "This server now uses sd (automatic1111).",
        "Backend in use: sd (automatic1111)",
    ]
    assert await stored_backend(bot) == "sd"
    assert (await backend_command(bot)).splitlines()[0] == "Backend in use: sd (automatic1111)"


async def test_a_backend_not_enabled_for_this_server_is_refused(bot: Harness) -> None:
    text = await backend_command(bot, "private")

    assert text == en(bot, "settings.backend_not_enabled", name="private", allowed="default, sd")
    assert await stored_backend(bot) is None


async def test_an_unknown_backend_is_refused(bot: Harness) -> None:
    text = await backend_command(bot, "nope")

    assert text.startswith("This server can't use the backend “nope”")


async def test_autocomplete_offers_only_the_backends_enabled_here_with_their_kind(
    bot: Harness,
) -> None:
    handle = await bot.fake.autocomplete(
        "settings", {"name": ""}, focused="name", subcommand="server-backend", user=bot.fake.admin
    )

    response = await handle.response()

    assert response.type == 8
    assert response.data["choices"] == [
        {"name": "default (openai)", "value": "default"},
        {"name": "sd (automatic1111)", "value": "sd"},
    ]


async def test_a_member_is_told_they_need_manage_server(bot: Harness) -> None:
    # Discord shows every member /settings (their own defaults) and so this subcommand too.
    text = await backend_command(bot, "sd", user=bot.fake.user)

    assert text == "You need the Manage Server permission(s) to do that."
    assert await stored_backend(bot) is None
