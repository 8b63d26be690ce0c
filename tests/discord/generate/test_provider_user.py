"""The ``user`` the provider sees: one stable hash per member and installation, nothing more.

The salt is random per installation and kept in its database, so two installations sharing an
API key (or anyone holding the key) cannot link a member's requests across them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bot.config import DatabaseSettings, Settings
from bot.testing.discord import FakeDiscord
from bot.testing.harness import make_settings, new_result, run_bot, seen_ids
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import scratch_database_url


def installation(tmp_path: Path, fake: FakeDiscord, api: FakeImagesAPI, name: str) -> Settings:
    """The harness's settings with its own database and no operator salt: the default setup."""
    settings = make_settings(tmp_path, fake, api)
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return dataclasses.replace(
        settings,
        provider=dataclasses.replace(settings.provider, user_salt=""),
        database=DatabaseSettings(url=scratch_database_url(folder)),
    )


async def user_sent_for_one_imagine(
    fake: FakeDiscord, api: FakeImagesAPI, settings: Settings
) -> str:
    async with run_bot(fake, api, settings) as harness:
        before = seen_ids(fake)
        await fake.slash("imagine", {"prompt": "a heron", "size": "256x256"}, user=fake.user)
        await new_result(harness, before)
    user = api.requests[-1].body["user"]
    assert isinstance(user, str)
    return user


async def test_each_installation_hashes_a_member_with_its_own_stored_salt(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake, api = fake_discord, fake_images_api
    first = installation(tmp_path, fake, api, "first")
    second = installation(tmp_path, fake, api, "second")
    assert first.provider.api_key == second.provider.api_key

    one = await user_sent_for_one_imagine(fake, api, first)
    again = await user_sent_for_one_imagine(fake, api, first)  # a restart, same database
    other = await user_sent_for_one_imagine(fake, api, second)
    assert one == again
    assert other != one
    assert str(fake.user.id) not in one + other
    assert fake.spec_violations == [] and api.spec_violations == []
