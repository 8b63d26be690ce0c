"""One place that turns every failure into a short, private, translated answer.

Slash commands reach :meth:`BotTree.on_error`; buttons, modals and reactions call
:func:`report_error` themselves (discord.py only logs their exceptions). Either way no interaction
is left unanswered ("The application did not respond"): the answer is sent as the first
response, as a follow-up, or - when the interaction has expired - not at all, but logged.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands

from bot.discord.errors import (
    BotMissingPermissions,
    GuildOnly,
    MemberMissingPermissions,
    OnCooldown,
)
from bot.discord.i18n import Catalog
from bot.errors import BotError
from bot.jobs import InternalError

log = logging.getLogger(__name__)


def as_bot_error(error: BaseException) -> BotError | None:
    """The BotError a failure means for a member, or None for an unexpected failure."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, BotError):
        return error
    if isinstance(error, app_commands.NoPrivateMessage):
        return GuildOnly()
    if isinstance(error, app_commands.MissingPermissions):
        return MemberMissingPermissions(permissions=_names(error.missing_permissions))
    if isinstance(error, app_commands.BotMissingPermissions):
        return BotMissingPermissions(permissions=_names(error.missing_permissions))
    if isinstance(error, app_commands.CommandOnCooldown):
        return OnCooldown(seconds=error.retry_after)
    if isinstance(error, discord.Forbidden) and error.code in {50001, 50013}:
        return BotMissingPermissions(permissions="Send Messages, Attach Files, Embed Links")
    return None


def _names(permissions: list[str]) -> str:
    return ", ".join(p.replace("_", " ").title() for p in permissions)


async def report_error(
    interaction: discord.Interaction[Any], error: BaseException, catalog: Catalog
) -> None:
    """Tell the member what went wrong, privately, in their language."""
    known = as_bot_error(error)
    if known is None:
        ref = secrets.token_hex(4).upper()
        log.error("unexpected error (reference %s)", ref, exc_info=error)
        known = InternalError(ref=ref)
    elif known.operator_problem:
        log.error("operator problem: %s", getattr(known, "detail", known))
    else:
        log.info("told member %s: %s", interaction.user.id, known.key)
    await send_private(interaction, catalog.error_text(known, interaction.locale))


async def send_private(interaction: discord.Interaction[Any], text: str) -> None:
    """An ephemeral message by whichever route is still open for this interaction."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
        else:
            await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        # Expired (10062, 50027) or already gone: nothing more can be said through it.
        log.warning("could not answer interaction %s: %s", interaction.id, exc)


class BotTree(app_commands.CommandTree[Any]):
    """The command tree with the bot's one error handler."""

    catalog: Catalog = Catalog({"en-US": {}})

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error, self.catalog)
