"""One place that turns every failure into a short, private, translated answer.

Slash commands reach :meth:`BotTree.on_error`; button and modal handlers are wrapped in
:func:`reports_errors` (discord.py only logs their exceptions); reactions and left-over requests,
which have no interaction, classify with :func:`member_error`. Either way no interaction
is left unanswered ("The application did not respond"): the answer is sent as the first
response, as a follow-up, or - when the interaction has expired - not at all, but logged.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import discord
from discord import app_commands

from bot.discord.errors import (
    BotMissingPermissions,
    GuildOnly,
    MemberMissingPermissions,
    OnCooldown,
)
from bot.discord.i18n import Catalog
from bot.errors import BotError, InternalError

log = logging.getLogger(__name__)

P = ParamSpec("P")

#: Discord's limit for a message; long answers are cut to fit.
MESSAGE_LIMIT = 2000


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


def member_error(error: BaseException, what: str = "unexpected error") -> BotError:
    """What to tell a member about ``error``: its BotError, or an InternalError whose
    reference is logged with the traceback (``what`` says where, for the operator)."""
    known = as_bot_error(error)
    if known is None:
        ref = secrets.token_hex(4).upper()
        log.error("%s (reference %s)", what, ref, exc_info=error)
        known = InternalError(ref=ref)
    return known


async def report_error(
    interaction: discord.Interaction[Any], error: BaseException, catalog: Catalog
) -> None:
    """Tell the member what went wrong, privately, in their language."""
    known = as_bot_error(error)
    if known is None:
        known = member_error(error)
    elif known.operator_problem:
        log.error("operator problem: %s", getattr(known, "detail", known))
    else:
        log.info("told member %s: %s", interaction.user.id, known.key)
    try:
        await send_private(interaction, catalog.error_text(known, interaction.locale))
    except discord.HTTPException as exc:
        # Expired (10062, 50027) or already gone: nothing more can be said through it.
        log.warning("could not answer interaction %s: %s", interaction.id, exc)


async def send_private(
    interaction: discord.Interaction[Any],
    text: str,
    *,
    file: discord.File | None = None,
    files: Sequence[discord.File] = (),
) -> None:
    """A private message by whichever route is open: the response, else a follow-up (after
    a defer or an earlier answer). Cut to Discord's message limit."""
    text = clip(text)
    attached = [*([file] if file is not None else []), *files]
    extra: dict[str, Any] = {"files": attached} if attached else {}
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, **extra)


def clip(content: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(content) <= limit:
        return content
    cut = content[: limit - 1].rsplit("\n", 1)[0]
    return cut + "\n…"


class _Reporting(Protocol):
    @property
    def catalog(self) -> Catalog: ...


R = TypeVar("R", bound=_Reporting)


def reports_errors(
    action: Callable[Concatenate[R, discord.Interaction[Any], P], Coroutine[Any, Any, None]],
) -> Callable[Concatenate[R, discord.Interaction[Any], P], Coroutine[Any, Any, None]]:
    """Wrap a button or modal handler: any failure is told to the member (discord.py would
    only log it and leave "This interaction failed")."""

    @functools.wraps(action)
    async def reported(
        self: R, interaction: discord.Interaction[Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        try:
            await action(self, interaction, *args, **kwargs)
        except Exception as exc:
            await report_error(interaction, exc, self.catalog)

    return reported


class BotTree(app_commands.CommandTree[Any]):
    """The command tree with the bot's one error handler."""

    catalog: Catalog = Catalog({"en-US": {}})

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error, self.catalog)
