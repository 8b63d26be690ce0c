"""Reacting to a result varies it: 🔄 (configurable) varies image 1, 1️⃣-🔟 vary that image.

The member who reacted is the requester. Reactions by bots, on messages the bot did not post as
results, or with other emoji are ignored; the job is found by the message id stored when the
result was delivered, so this keeps working after a restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.jobs import store

if TYPE_CHECKING:
    from bot.discord.bot import ImageBot

log = logging.getLogger(__name__)

KEYCAPS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")


def image_index(emoji: str, vary_emoji: str) -> int | None:
    """Which image (0-based) a reaction asks to vary, or None for any other emoji."""
    if emoji == vary_emoji:
        return 0
    if emoji in KEYCAPS:
        return KEYCAPS.index(emoji)
    return None


class Reactions(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        bot = self.bot
        if payload.guild_id is None or (bot.user and payload.user_id == bot.user.id):
            return
        if payload.member is not None and payload.member.bot:
            return
        index = image_index(str(payload.emoji), bot.settings.discord.vary_emoji)
        if index is None:
            return
        job = await store.job_for_message(bot.storage.sessions, payload.message_id)
        if job is None:
            return
        log.info("reaction %s on job %d by %d", payload.emoji, job.id, payload.user_id)
        await bot.actions.vary_from_reaction(payload, job, index)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Reactions(bot))
