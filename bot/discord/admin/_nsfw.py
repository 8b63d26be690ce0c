"""/moderation nsfw …: a server's admins set its NSFW rules.

- ``low-moderation allow:`` GPT image models get ``moderation="low"`` in age-restricted
  channels (Discord's ``nsfw`` flag; a thread has its parent's), elsewhere the provider's
  default; decided when a request is admitted.
- ``spoilers on: scope:`` results posted as spoilers in the whole server or in one channel.
- ``negative-prompt [text] [clear]`` added to every Stable Diffusion request's negative prompt.
- ``show`` the rules in force.

Every answer is private and says the rules as they are after it. Discord hides /moderation from
members without Manage Server; the permission is checked again when a command runs. The rules
are stored by :mod:`bot.moderation.nsfw` (the one writer of those columns) and read through the
job runner's :class:`~bot.moderation.nsfw.ContentRules`, told to read them again here.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.db import Sessions
from bot.discord.admin._quota import require_manage_guild
from bot.discord.i18n import Catalog, text
from bot.discord.markup import channel_list
from bot.discord.tree import send_private
from bot.errors import BotError
from bot.moderation import nsfw
from bot.moderation.nsfw import NEGATIVE_PROMPT_LIMIT, ContentRules, NsfwRules

SERVER, CHANNEL = "server", "channel"


class TextOrClear(BotError):
    key = "moderation.nsfw.text_or_clear"
    template = "Give either a new negative prompt or clear, not both."


def rules_text(catalog: Catalog, locale: Any, rules: NsfwRules) -> str:
    """The server's NSFW rules, one line each."""

    def line(key: str, **params: Any) -> str:
        return catalog.text(key, locale, **params)

    lines = [line("nsfw.show.low_on" if rules.low_moderation else "nsfw.show.low_off")]
    if rules.spoiler_results:
        lines.append(line("nsfw.show.spoilers_server"))
    elif rules.spoiler_channels:
        lines.append(
            line("nsfw.show.spoilers_channels", channels=channel_list(rules.spoiler_channels))
        )
    else:
        lines.append(line("nsfw.show.spoilers_off"))
    if rules.sd_negative_prompt:
        shown = discord.utils.escape_mentions(
            discord.utils.escape_markdown(rules.sd_negative_prompt)
        )
        lines.append(line("nsfw.show.negative", text=shown))
    else:
        lines.append(line("nsfw.show.negative_none"))
    return "\n".join(lines)


class NsfwGroup(app_commands.Group):
    """/moderation nsfw show|low-moderation|spoilers|negative-prompt"""

    def __init__(self, catalog: Catalog, sessions: Sessions, rules: ContentRules) -> None:
        super().__init__(
            name=text("nsfw", "cmd.moderation.nsfw.name"),
            description=text(
                "Age-restricted channels, spoiler results and the negative prompt",
                "cmd.moderation.nsfw.description",
            ),
        )
        self.catalog, self.sessions, self.rules = catalog, sessions, rules

    async def _answer(
        self, interaction: discord.Interaction[Any], guild_id: int, rules: NsfwRules
    ) -> None:
        self.rules.forget(guild_id)
        await send_private(interaction, rules_text(self.catalog, interaction.locale, rules))

    @app_commands.command(
        name=text("rules", "cmd.moderation.nsfw.rules.name"),
        description=text("See this server's NSFW rules", "cmd.moderation.nsfw.rules.description"),
    )
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        guild_id = require_manage_guild(interaction)
        await self._answer(interaction, guild_id, await nsfw.rules_of(self.sessions, guild_id))

    @app_commands.command(
        name=text("low-moderation", "cmd.moderation.nsfw.low_moderation.name"),
        description=text(
            "Allow less strict moderation of GPT image models in age-restricted channels",
            "cmd.moderation.nsfw.low_moderation.description",
        ),
    )
    @app_commands.rename(allow=text("allow", "opt.nsfw_allow.name"))
    @app_commands.describe(
        allow=text(
            "True: moderation “low” in age-restricted channels; False: the default everywhere",
            "opt.nsfw_allow.description",
        )
    )
    async def low_moderation(self, interaction: discord.Interaction[Any], allow: bool) -> None:
        guild_id = require_manage_guild(interaction)
        rules = await nsfw.set_low_moderation(self.sessions, guild_id, allow)
        await self._answer(interaction, guild_id, rules)

    @app_commands.command(
        name=text("spoilers", "cmd.moderation.nsfw.spoilers.name"),
        description=text(
            "Post results as spoilers in the whole server or in a channel",
            "cmd.moderation.nsfw.spoilers.description",
        ),
    )
    @app_commands.rename(
        on=text("on", "opt.spoilers_on.name"),
        scope=text("scope", "opt.spoilers_scope.name"),
        channel=text("channel", "opt.channel.name"),
    )
    @app_commands.describe(
        on=text(
            "True: results are spoilers there; False: they are not", "opt.spoilers_on.description"
        ),
        scope=text("The whole server, or one channel", "opt.spoilers_scope.description"),
        channel=text("The channel (leave it out for this one)", "opt.spoilers_channel.description"),
    )
    @app_commands.choices(
        scope=[
            Choice(name=text("the whole server", "choice.spoilers_scope.server"), value=SERVER),
            Choice(name=text("a channel", "choice.spoilers_scope.channel"), value=CHANNEL),
        ]
    )
    async def spoilers(
        self,
        interaction: discord.Interaction[Any],
        on: bool,
        scope: Choice[str],
        channel: discord.TextChannel | discord.VoiceChannel | discord.Thread | None = None,
    ) -> None:
        guild_id = require_manage_guild(interaction)
        where = None
        if scope.value == CHANNEL:
            where = channel.id if channel is not None else interaction.channel_id
        rules = await nsfw.set_spoilers(self.sessions, guild_id, on, where)
        await self._answer(interaction, guild_id, rules)

    @app_commands.command(
        name=text("negative-prompt", "cmd.moderation.nsfw.negative_prompt.name"),
        description=text(
            "Set what every Stable Diffusion image here must avoid",
            "cmd.moderation.nsfw.negative_prompt.description",
        ),
    )
    @app_commands.rename(
        new=text("text", "opt.negative_text.name"),
        clear=text("clear", "opt.negative_clear.name"),
    )
    @app_commands.describe(
        new=text(
            "Added to every request's negative prompt (leave it out to see the current one)",
            "opt.negative_text.description",
        ),
        clear=text("True: add nothing any more", "opt.negative_clear.description"),
    )
    async def negative_prompt(
        self,
        interaction: discord.Interaction[Any],
        new: Range[str, 1, NEGATIVE_PROMPT_LIMIT] | None = None,
        clear: bool = False,
    ) -> None:
        guild_id = require_manage_guild(interaction)
        if clear and new is not None:
            raise TextOrClear()
        if clear or new is not None:
            rules = await nsfw.set_negative_prompt(self.sessions, guild_id, new)
        else:
            rules = await nsfw.rules_of(self.sessions, guild_id)
        await self._answer(interaction, guild_id, rules)
