"""The bot as one of several processes: a gateway for some shards, a gateway without jobs, a
worker without a gateway, and the slash commands synced once for all of them.

Each bot is built as the composition root builds it (``open_bot`` with a ProcessInfo) and runs
against the fake Discord; the database is SQLite unless the test is about sharing PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.app import open_bot, operator_endpoint, sync_commands
from bot.config import DatabaseSettings, DiscordSettings, HttpSettings, Settings
from bot.db.models import JobStatus
from bot.discord.bot import ImageBot, ShardedImageBot
from bot.jobs import store
from bot.jobs.processes import ProcessInfo
from bot.ops.metrics import Metrics
from bot.testing.discord import FakeDiscord, P, StoredMessage
from bot.testing.harness import make_settings
from bot.testing.openai_api import FakeImagesAPI

IMAGINE = {"prompt": "a harbour at night", "size": "256x256"}


def with_http(settings: Settings) -> Settings:
    return dataclasses.replace(settings, http=HttpSettings(enabled=True, host="127.0.0.1", port=0))


async def healthz(settings: Settings, bot: ImageBot) -> dict[str, Any]:
    async with (
        operator_endpoint(settings, Metrics(), bot) as server,
        aiohttp.ClientSession() as http,
    ):
        assert server is not None
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            body: dict[str, Any] = await response.json()
            body["http_status"] = response.status
            return body


@contextlib.asynccontextmanager
async def worker(settings: Settings, fake: FakeDiscord) -> AsyncIterator[ImageBot]:
    """A worker process's bot: logged in over REST, its jobs running; no gateway connection."""
    async with open_bot(settings, process=ProcessInfo(role="worker")) as bot:
        running = asyncio.create_task(bot.run_without_gateway(fake.token))
        try:
            await fake.state.pulse.wait_until(
                lambda: True if bot.runner.dispatcher.alive or running.done() else None,
                10,
                lambda: "the worker to log in",
            )
            if running.done():
                running.result()
            yield bot
        finally:
            await bot.runner.close()
            await bot.close()
            await asyncio.wait_for(running, 5)


def requests_of(fake: FakeDiscord, method: str, suffix: str) -> list[int]:
    """The statuses of the requests ``method ... suffix`` the fake received."""
    return [r.status for r in fake.requests if r.method == method and r.path.endswith(suffix)]


# --- sharded gateways ---------------------------------------------------------------------------


async def test_a_sharded_bot_serves_the_guilds_of_its_shard_only(
    tmp_path: Path, fake_images_api: FakeImagesAPI
) -> None:
    async with FakeDiscord(shard_count=2) as fake:
        mine = fake.shard_of(fake.guild)
        other = fake.add_guild("Other shard", shard=1 - mine)
        fake.add_channel(other)
        outsider = fake.add_member(other, "carol")
        settings = make_settings(tmp_path, fake, fake_images_api)
        process = ProcessInfo(shard_ids=(mine,), shard_count=2)
        async with open_bot(settings, process=process, guild_ready_timeout=0.05) as bot:
            assert isinstance(bot, ShardedImageBot)
            async with fake.running(bot):
                assert [p["shard"] for p in fake.identify_payloads] == [[mine, 2]]
                assert {g.id for g in bot.guilds} == {fake.guild.id}
                handle = await fake.slash("imagine", IMAGINE)
                assert (await handle.response()).type == 5
                result = await handle.wait_message(lambda m: bool(m.attachments), timeout=10)
                assert result.attachments[0].filename == "image_1.png"
                with pytest.raises(RuntimeError, match="no bot is connected"):
                    await fake.slash("imagine", IMAGINE, user=outsider, channel=other.channels[0])
                assert bot.gateway_problem() is None

                dropped = asyncio.ensure_future(bot.wait_for("shard_disconnect", timeout=5))
                resumed = asyncio.ensure_future(bot.wait_for("shard_resumed", timeout=5))
                await fake.disconnect(shard=mine)
                await dropped
                assert bot.gateway_problem() == (
                    f"the Discord gateway connection of shard {mine} dropped; reconnecting"
                )
                await resumed
                assert bot.gateway_problem() is None
        assert bot.gateway_problem() == "the Discord connection is closed"
    assert [r.body.get("prompt") for r in fake_images_api.requests] == [IMAGINE["prompt"]]
    assert fake.spec_violations == []


async def test_the_default_bot_is_one_unsharded_connection(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    settings = make_settings(tmp_path, fake_discord, fake_images_api)
    async with open_bot(settings, guild_ready_timeout=0.05) as bot, fake_discord.running(bot):
        assert type(bot) is ImageBot and bot.process.role == "both"
        assert "shard" not in fake_discord.identify_payloads[-1]
    assert ("GET", "/gateway/bot") not in [(r.method, r.path) for r in fake_discord.requests]


# --- a gateway without jobs, a worker without a gateway ------------------------------------------


async def test_a_gateway_queues_and_a_worker_delivers_by_every_rest_route(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    """The gateway defers and queues, runs nothing; the worker, with no gateway connection and
    an empty cache, posts by the follow-up webhook, in the channel, and by DM."""
    fake, api = fake_discord, fake_images_api
    settings = with_http(make_settings(tmp_path, fake, api))
    closed = fake.add_channel(fake.guild, "read-only", bot_permissions=P.VIEW_CHANNEL)
    gateway = ProcessInfo(role="gateway")
    async with (
        open_bot(settings, process=gateway, guild_ready_timeout=0.05) as bot,
        fake.running(bot),
    ):
        health = await healthz(settings, bot)
        assert health["checks"] == {"gateway": "ok", "database": "ok"}  # no dispatcher
        handles = []
        for prompt, channel in (("follow-up", None), ("channel", None), ("dm", closed)):
            handle = await fake.slash("imagine", {**IMAGINE, "prompt": prompt}, channel=channel)
            assert (await handle.response()).type == 5
            await handle.wait_message()  # the private status: queued
            handles.append(handle)
        await asyncio.sleep(0.2)
        assert api.requests == []  # a gateway runs no job
        jobs = [await store.get_job(bot.storage.sessions, i) for i in (1, 2, 3)]
        assert [j.status for j in jobs if j is not None] == [JobStatus.QUEUED] * 3
    fake.expire_interaction(handles[1])
    fake.expire_interaction(handles[2])
    connections = len(fake.gateway.queries)

    async with worker(settings, fake) as bot:
        health = await healthz(settings, bot)
        assert health["http_status"] == 200, health
        assert health["checks"] == {"gateway": "ok", "database": "ok", "dispatcher": "ok"}

        def result(prompt: str) -> Any:
            def check() -> StoredMessage | None:
                for m in fake.state.messages.values():
                    if m.attachments and m.embeds and m.embeds[0].get("description") == prompt:
                        return m
                return None

            return fake.state.pulse.wait_until(check, 10, lambda: f"the {prompt!r} result")

        by_webhook, in_channel, by_dm = [await result(p) for p in ("follow-up", "channel", "dm")]
        await bot.runner.wait_idle()
    assert by_webhook.source == "followup" and by_webhook.channel_id == fake.channel.id
    assert in_channel.source == "channel" and in_channel.channel_id == fake.channel.id
    assert by_dm.channel_id == fake.dm_channel(fake.user).id
    assert len(fake.gateway.queries) == connections  # the worker never opened the gateway
    assert ("GET", "/gateway/bot") not in [(r.method, r.path) for r in fake.requests]
    assert fake.spec_violations == []


# --- command sync, once ---------------------------------------------------------------------------


def commands_put(fake: FakeDiscord) -> list[int]:
    return requests_of(fake, "PUT", f"/applications/{fake.application_id}/commands")


async def log_in(settings: Settings, fake: FakeDiscord, processes: int = 1) -> None:
    """Processes starting together: each logs in (setup_hook syncs the commands) and stops.

    Their bots are opened one after the other (Alembic's module-level state cannot migrate
    twice at once in one Python process; real processes each have their own), then log in at
    the same time."""
    async with contextlib.AsyncExitStack() as stack:
        bots = [
            await stack.enter_async_context(open_bot(settings, start_jobs=False))
            for _ in range(processes)
        ]
        await asyncio.gather(*(bot.login(fake.token) for bot in bots))


async def test_two_processes_starting_together_sync_the_commands_once(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI, postgres_url: str
) -> None:
    fake = fake_discord
    settings = dataclasses.replace(
        make_settings(tmp_path, fake, fake_images_api),
        database=DatabaseSettings(url=postgres_url),
    )
    # The first sync waits out a 429 while it holds the right to sync: the other process,
    # starting meanwhile, waits for it and then finds the commands synced.
    fake.fail_next("PUT", r"/commands$", 429, retry_after=0.5)
    await log_in(settings, fake, processes=2)
    assert commands_put(fake) == [429, 200]
    assert {c["name"] for c in fake.commands} >= {"imagine", "edit"}

    await log_in(settings, fake)  # a restart, or a third process: nothing changed
    assert commands_put(fake) == [429, 200]

    dev = dataclasses.replace(
        settings, discord=dataclasses.replace(settings.discord, dev_guild_id=fake.guild.id)
    )
    await log_in(dev, fake, processes=2)  # a new target: synced there
    guild_puts = requests_of(fake, "PUT", f"/guilds/{fake.guild.id}/commands")
    assert guild_puts == [200]
    assert commands_put(fake) == [429, 200]


async def test_a_restart_syncs_only_changed_commands_and_sync_always_does(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake = fake_discord
    settings = make_settings(tmp_path, fake, fake_images_api)
    await log_in(settings, fake)
    await log_in(settings, fake)
    assert commands_put(fake) == [200]
    await sync_commands(settings)  # `python -m bot sync`: the operator asked
    assert commands_put(fake) == [200, 200]


async def test_a_failed_sync_is_tried_again_at_the_next_start(
    tmp_path: Path, fake_discord: FakeDiscord, fake_images_api: FakeImagesAPI
) -> None:
    fake = fake_discord
    settings = make_settings(tmp_path, fake, fake_images_api)
    fake.fail_next("PUT", r"/commands$", 400, 50035, "Invalid Form Body")
    with pytest.raises(discord.app_commands.CommandSyncFailure):
        await log_in(settings, fake)
    await log_in(settings, fake)
    assert commands_put(fake) == [400, 200]
    assert fake.commands


async def test_another_application_syncs_its_own_commands(
    tmp_path: Path, fake_images_api: FakeImagesAPI
) -> None:
    """A new bot token (another application) on the same database registers its commands."""
    settings = make_settings(tmp_path, FakeDiscord(), fake_images_api)
    for _ in range(2):
        async with FakeDiscord() as fake:
            discord_settings = DiscordSettings(
                token=fake.token, api_base_url=fake.api_base, gateway_url=fake.gateway_url
            )
            await log_in(dataclasses.replace(settings, discord=discord_settings), fake)
            assert commands_put(fake) == [200]
