"""The end-to-end driver: the whole bot, wired as `python -m bot run` wires it, against the fakes.

Tests reach it through the fixtures in ``tests/discord/conftest.py``; the benchmarks in ``bench/``
use it directly, so it lives here and not in a conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import open_bot
from bot.config import (
    DatabaseSettings,
    DiscordSettings,
    ProviderSettings,
    QuotaSettings,
    Settings,
    StorageSettings,
)
from bot.discord.bot import ImageBot
from bot.testing.automatic1111 import FakeAutomatic1111
from bot.testing.comfyui import FakeComfyUI
from bot.testing.discord import FakeChannel, FakeDiscord, FakeMember, StoredMessage
from bot.testing.migrated import migrated_database_url
from bot.testing.openai_api import FakeImagesAPI


@dataclass
class Harness:
    fake: FakeDiscord
    api: FakeImagesAPI
    bot: ImageBot
    settings: Settings
    #: The AUTOMATIC1111 server, when a backend points at one (see :func:`a1111_backend`).
    a1111: FakeAutomatic1111 | None = None

    async def result(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The next public message with images (a posted result)."""

        def is_result(message: StoredMessage) -> bool:
            return (
                bool(message.attachments)
                and not message.ephemeral
                and (predicate is None or predicate(message))
            )

        return await self.fake.wait_for_message(
            is_result, timeout=timeout, sources=("channel", "followup", "response")
        )

    async def idle(self) -> None:
        await self.bot.runner.wait_idle()


def make_settings(
    tmp_path: Path,
    fake: FakeDiscord,
    api: FakeImagesAPI,
    model: str = "dall-e-2",
    *,
    backends: Mapping[str, ProviderSettings] | None = None,
    **provider: Any,
) -> Settings:
    """Settings against the fakes; ``provider`` keys replace those of the fake image API (an
    AUTOMATIC1111 ``[provider]``: ``**a1111_backend(server)``). The database is
    ``tmp_path/bot.db``, or PostgreSQL with IMAGEBOT_TEST_DATABASE=postgresql, already
    migrated (bot.testing.migrated) unless it exists."""
    defaults: dict[str, Any] = {
        "base_url": api.base_url,
        "api_key": api.api_key,
        "model": model,
        "max_retries": 0,
        "user_salt": "test",
        "images_per_minute": 100_000,
    }
    return Settings(
        discord=DiscordSettings(
            token=fake.token, api_base_url=fake.api_base, gateway_url=fake.gateway_url
        ),
        provider=ProviderSettings(**(defaults | provider)),
        backends=dict(backends or {}),
        database=DatabaseSettings(url=migrated_database_url(tmp_path)),
        # The test's own: on PostgreSQL the started-jobs journal lives here, not beside a file.
        storage=StorageSettings(spool_dir=str(tmp_path / "spool")),
        quotas=ROOMY_QUOTAS,
    )


def a1111_backend(server: FakeAutomatic1111, **changes: Any) -> dict[str, Any]:
    """The keys of a backend on the fake AUTOMATIC1111 ``server`` (as ``type = "automatic1111"``
    and its address in config.toml), for :func:`make_settings` or a ProviderSettings."""
    keys: dict[str, Any] = {
        "type": "automatic1111",
        "base_url": server.base_url,
        "api_key": "",
        "model": "",
        "max_retries": 0,
        "images_per_minute": 100_000,
    }
    if server.auth is not None:
        keys["username"], keys["password"] = server.auth
    return keys | changes


def comfyui_backend(server: FakeComfyUI, **changes: Any) -> dict[str, Any]:
    """The keys of a backend on the fake ComfyUI ``server`` (``type = "comfyui"``, the shipped
    workflows), for :func:`make_settings` or a ProviderSettings."""
    keys: dict[str, Any] = {
        "type": "comfyui",
        "base_url": server.base_url,
        "api_key": "",
        "model": "",
        "max_retries": 0,
        "images_per_minute": 100_000,
    }
    return keys | changes


#: Quotas no test hits unless it means to: tests of the quotas set their own.
ROOMY_QUOTAS = QuotaSettings(
    images_per_day=100_000,
    images_per_month=1_000_000,
    spend_per_month_usd=100_000.0,
    member_images_per_day=100_000,
    max_images_per_day=100_000,
    max_images_per_month=1_000_000,
    max_spend_per_month_usd=100_000.0,
    max_member_images_per_day=100_000,
    max_n=10,
)


@asynccontextmanager
async def run_bot(
    fake: FakeDiscord,
    api: FakeImagesAPI,
    settings: Settings,
    *,
    a1111: FakeAutomatic1111 | None = None,
) -> AsyncIterator[Harness]:
    async with open_bot(settings, guild_ready_timeout=0.05) as bot, fake.running(bot):
        yield Harness(fake, api, bot, settings, a1111)


# --- what the command tests look at ---------------------------------------------------------------


def synced(fake: FakeDiscord, name: str, kind: int = 1) -> dict[str, Any]:
    """The synced payload of the command ``name`` (1 slash, 3 message menu)."""
    found = [c for c in fake.commands if c["name"] == name and c.get("type", 1) == kind]
    assert found, f"no synced command {name!r}: {[c['name'] for c in fake.commands]}"
    return found[0]


def api_calls(api: FakeImagesAPI, endpoint: str | None = None) -> list[Any]:
    """Requests the fake image API received, optionally only to /images/<endpoint>."""
    return [r for r in api.requests if endpoint is None or r.path.endswith(f"/images/{endpoint}")]


# --- helpers for the result follow-up tests (buttons, reactions, delivery, restart) -----------


def seen_ids(fake: FakeDiscord) -> set[int]:
    """The ids of every message stored so far: what a following result must not be."""
    return set(fake.state.messages)


async def new_result(
    harness: Harness,
    before: set[int],
    predicate: Callable[[StoredMessage], bool] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> StoredMessage:
    """The next public result posted after ``before`` was taken (see :func:`seen_ids`).

    Then waits until the bot is idle: the message is posted a moment before the bot records it
    as the job's result, and buttons and reactions find the job by that record."""
    result = await harness.result(
        lambda m: m.id not in before and (predicate is None or predicate(m)), timeout=timeout
    )
    await harness.idle()
    return result


def job_id_of(message: StoredMessage) -> int:
    """The job a result belongs to, read from its buttons' custom_ids (``ib:<action>:<job>...``,
    a studio action's ``ib:act:<action>:<job>:<index>``)."""
    jobs = {
        int(parts[3] if parts[1] == "act" else parts[2])
        for parts in (custom_id.split(":") for custom_id in message.custom_ids)
    }
    assert len(jobs) == 1, message.custom_ids
    return jobs.pop()


def fields(message: StoredMessage) -> dict[str, str]:
    """The fields of the message's first embed, name to value."""
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields") or []}


def field_value(message: StoredMessage, name: str) -> str | None:
    """The value of the first embed field called ``name`` in any of the message's embeds."""
    for embed in message.embeds:
        for item in embed.get("fields") or []:
            if item["name"] == name:
                return str(item["value"])
    return None


def en(harness: Harness, key: str, **params: Any) -> str:
    """The bot's English text for a catalog key: what a member with an English client reads."""
    return harness.bot.catalog.text(key, "en-US", **params)


# --- helpers for the quota and usage tests ------------------------------------------------------


async def quota(
    h: Harness,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: FakeMember | None = None,
    locale: str | None = None,
) -> str:
    """Run /quota <subcommand> as the admin (by default); the private answer's text."""
    handle = await h.fake.slash(
        "quota", options, subcommand=subcommand, user=user or h.fake.admin, locale=locale
    )
    response = await handle.response()
    assert response.ephemeral
    message = await handle.wait_message()
    assert message.ephemeral
    return message.content


async def made(
    h: Harness, member: FakeMember, n: int = 1, channel: FakeChannel | None = None
) -> StoredMessage:
    """``member`` asks for ``n`` images and they are posted."""
    before = seen_ids(h.fake)
    await h.fake.slash(
        "imagine", {"prompt": "a lighthouse", "count": n}, user=member, channel=channel
    )
    result = await h.result(lambda m: m.id not in before)
    await h.idle()
    assert len(result.attachments) == n
    return result


async def refused(
    h: Harness, member: FakeMember, n: int = 1, channel: FakeChannel | None = None
) -> str:
    """``member`` asks for ``n`` images and is told privately why not; nothing is made."""
    calls = len(h.api.requests)
    handle = await h.fake.slash(
        "imagine", {"prompt": "a lighthouse", "count": n}, user=member, channel=channel
    )
    message = await handle.wait_message(lambda m: bool(m.content))
    await h.idle()
    assert message.ephemeral and not message.attachments
    assert len(h.api.requests) == calls
    return message.content
