"""The composition root: every long-lived dependency is opened here and passed down.

Nothing else creates HTTP sessions, engines or thread pools, so tests can build the same graph
against fakes, and shutdown closes everything in one place (reverse order of opening).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp

from bot.config import Settings
from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.db.engine import Storage
from bot.generation import Engine
from bot.imaging import ImageLimits, ImageWorker
from bot.providers import ImagesClient, build_model_table

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=int(settings.images.max_upload_mb * 1024 * 1024),
        max_pixels=settings.images.max_pixels,
    )


@asynccontextmanager
async def open_engine(settings: Settings) -> AsyncIterator[Engine]:
    """The image engine alone: what the one-shot commands need (no Discord, no database)."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        images = await stack.enter_async_context(
            ImageWorker(settings.images.workers, limits=image_limits(settings))
        )
        models = build_model_table(settings.provider.models)
        provider = ImagesClient(http, settings.provider, models)
        yield Engine(settings, http, images, provider)


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """The database, migrated to the latest schema before anyone uses it."""
    engine = create_engine(settings.database.url)
    try:
        await upgrade_database(engine)
        yield Storage(engine, create_sessionmaker(engine))
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_bot(
    settings: Settings, *, sync_commands: bool | None = None, **bot_options: Any
) -> AsyncIterator[ImageBot]:
    """The Discord bot with everything it needs; closed (jobs stopped) on exit."""
    from bot.discord.bot import ImageBot, point_discord_at
    from bot.discord.i18n import Catalog
    from bot.jobs import JobRunner

    if sync_commands is None:
        sync_commands = settings.discord.sync_commands

    async with open_storage(settings) as storage, open_engine(settings) as engine:
        runner = JobRunner(engine, storage.sessions, concurrency=settings.jobs.concurrency)
        point_discord_at(settings.discord)
        bot = ImageBot(
            settings,
            engine=engine,
            storage=storage,
            runner=runner,
            catalog=Catalog.load(),
            sync_commands=sync_commands,
            **bot_options,
        )
        try:
            async with bot:
                yield bot
        finally:
            await runner.close()


async def run_discord_bot(settings: Settings) -> None:
    async with open_bot(settings) as bot:
        await bot.start(settings.discord.token)


async def sync_commands(settings: Settings) -> None:
    """Log in, which syncs the commands in setup_hook, and leave without connecting."""
    async with open_bot(settings, sync_commands=True) as bot:
        await bot.login(settings.discord.token)
