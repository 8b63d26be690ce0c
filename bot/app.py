"""The composition root: every long-lived dependency is opened here and passed down.

Nothing else creates HTTP sessions, engines or thread pools, so tests can build the same graph
against fakes, and shutdown closes everything in one place (reverse order of opening).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db import create_engine, create_sessionmaker, upgrade_database
from bot.generation import Engine
from bot.imaging import ImageLimits, ImageWorker
from bot.providers import ImagesClient, build_model_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Storage:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


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


async def run_discord_bot(settings: Settings) -> None:
    from bot.discord.bot import ImageBot, point_discord_at

    async with open_storage(settings), open_engine(settings):
        point_discord_at(settings.discord)
        async with ImageBot(settings.discord) as client:
            await client.start(settings.discord.token)
