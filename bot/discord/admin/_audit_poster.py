"""The audit channel's poster: a background task that posts the outbox's entries as embeds.

The jobs only write a row (:mod:`bot.moderation.audit`); this task reads the entries still to
post in id order and posts each: the requester as a mention that pings nobody, the command,
prompt, the result's first image as the thumbnail, the cost, the outcome and a jump link to the
result (for a private result, which only its requester can open, a note saying so instead).
A failed post is tried again with a growing pause and given up after
:data:`~bot.moderation.audit.MAX_ATTEMPTS` tries; a channel that is gone or that the bot may not
post in gives the entry up at once (logged once per channel) without holding up the others.

Every process that runs jobs runs a poster: on PostgreSQL each entry's row is claimed with
``FOR UPDATE SKIP LOCKED`` while it is posted, so exactly one process posts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import discord
from sqlalchemy.exc import SQLAlchemyError

from bot.db import Sessions
from bot.db.engine import finish_even_if_cancelled
from bot.discord.i18n import Catalog
from bot.moderation.audit import MAX_ATTEMPTS, Claim, claim_entry
from bot.quotas.policy import usd

log = logging.getLogger(__name__)

#: Seconds between looks at the outbox while it is empty.
IDLE_SECONDS = 1.0
#: The pause after an entry's first failed post; doubled after each further one.
FIRST_BACKOFF = 2.0
#: Discord's embed colours by outcome (green, red, grey, amber).
COLOURS = {"delivered": 0x2ECC71, "failed": 0xE74C3C, "refused": 0xE67E22, "cancelled": 0x95A5A6}
#: The errors a post can end with that another try may mend.
TRANSIENT = (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def jump_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


class AuditPoster:
    """Posts the audit outbox for every server this bot is in (see the module's docstring)."""

    def __init__(self, client: discord.Client, catalog: Catalog, sessions: Sessions) -> None:
        self.client, self.catalog, self.sessions = client, catalog, sessions
        #: Entries backing off after a failed post: when each may be tried again.
        self._retry_at: dict[int, float] = {}
        #: Channels whose absence or missing permission was logged already.
        self._warned: set[int] = set()

    async def run_forever(self) -> None:
        while True:
            try:
                # Stopped at shutdown: the pass in hand ends first, so no pooled connection is
                # left mid-rollback (SQLAlchemy would log a traceback for it).
                busy = await finish_even_if_cancelled(self.post_next())
            except (SQLAlchemyError, OSError):
                log.exception("audit entries: reading the outbox failed; trying again")
                busy = False
            except Exception:  # a bug must not end the poster for the process's lifetime
                log.exception("audit entries: posting failed unexpectedly; going on")
                busy = False
            if not busy:
                await asyncio.sleep(IDLE_SECONDS)

    async def post_next(self) -> bool:
        """Post the oldest entry due; False when there is none."""
        now = time.monotonic()
        waiting = {entry for entry, at in self._retry_at.items() if at > now}
        async with claim_entry(self.sessions, waiting) as claim:
            if claim is None:
                return False
            try:
                await self._post(claim)
            except Exception:  # a bug with this entry: given up, so it is not tried forever
                log.exception("audit entry %d could not be posted; given up", claim.entry.id)
                claim.failed(final=True)
        return True

    async def _post(self, claim: Claim) -> None:
        entry = claim.entry
        try:
            embed = await self.embed(entry.guild_id, claim.body)
            channel = self.client.get_partial_messageable(entry.channel_id, guild_id=entry.guild_id)
            await channel.send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
        except (discord.NotFound, discord.Forbidden) as error:
            claim.failed(final=True)
            self._retry_at.pop(entry.id, None)
            if entry.channel_id not in self._warned:
                self._warned.add(entry.channel_id)
                log.warning(
                    "audit entries for server %d: channel %d is gone or the bot may not post "
                    "there (%s %s); its entries are not posted",
                    entry.guild_id,
                    entry.channel_id,
                    error.status,
                    error.code,
                )
            return
        except TRANSIENT as error:
            status = getattr(error, "status", 500)
            # Discord refused the entry itself (another try sends the same): given up now.
            attempts = claim.failed(final=400 <= status < 500 and status != 429)
            if attempts >= MAX_ATTEMPTS:
                self._retry_at.pop(entry.id, None)
                log.warning(
                    "audit entry %d not posted after %d tries: %s", entry.id, attempts, error
                )
            else:
                pause = FIRST_BACKOFF * 2 ** (attempts - 1)
                self._retry_at[entry.id] = time.monotonic() + pause
            return
        claim.posted()
        self._retry_at.pop(entry.id, None)

    async def thumbnail(self, body: dict[str, Any]) -> str | None:
        """The result message's first image, as Discord serves it; None without one."""
        channel_id, message_id = body.get("result_channel_id"), body.get("result_message_id")
        if not channel_id or not message_id:
            return None
        try:
            message = await self.client.get_partial_messageable(channel_id).fetch_message(
                message_id
            )
        except TRANSIENT:
            return None
        for attachment in message.attachments:
            if (attachment.content_type or "").startswith("image/"):
                return attachment.url
        return None

    def outcome(self, body: dict[str, Any], locale: Any) -> str:
        text = self.catalog.text
        outcome = str(body.get("outcome"))
        if outcome == "refused":
            reason = str(body.get("reason"))
            if reason == "blocklist":
                return text("audit.outcome.refused_blocklist", locale)
            if reason == "precheck":
                categories = body.get("categories") or []
                if isinstance(categories, str):
                    categories = [categories]
                shown = ", ".join(str(c) for c in categories) or "?"
                return text("audit.outcome.refused_precheck", locale, categories=shown)
            return text("audit.outcome.refused", locale, reason=reason)
        if outcome == "failed":
            return text("audit.outcome.failed", locale, error=body.get("error") or "?")
        if outcome in ("delivered", "succeeded", "cancelled", "interrupted"):
            return text(f"audit.outcome.{outcome}", locale)
        return outcome

    async def embed(self, guild_id: int, body: dict[str, Any]) -> discord.Embed:
        guild = self.client.get_guild(guild_id)
        locale = guild.preferred_locale if guild is not None else None
        text = self.catalog.text
        outcome = str(body.get("outcome"))
        command = str(body.get("command") or "?")
        embed = discord.Embed(
            title=f"/{command}",
            description=str(body.get("prompt") or "")[:4000] or None,
            colour=COLOURS.get(outcome, COLOURS["cancelled"]),
        )
        embed.add_field(
            name=text("audit.entry.requester", locale), value=f"<@{body.get('user_id')}>"
        )
        embed.add_field(name=text("audit.entry.outcome", locale), value=self.outcome(body, locale))
        if "cost_micro_usd" in body:
            embed.add_field(
                name=text("audit.entry.cost", locale), value=usd(body["cost_micro_usd"])
            )
        channel_id, message_id = body.get("result_channel_id"), body.get("result_message_id")
        if body.get("private") and message_id:
            # An ephemeral message (or a DM): no link opens it and its image cannot be read
            # back; the entry still says who asked for what, and that it was delivered.
            embed.add_field(
                name=text("audit.entry.result", locale),
                value=text("audit.entry.private", locale),
                inline=False,
            )
        elif channel_id and message_id:
            link = jump_link(guild_id, channel_id, message_id)
            embed.add_field(
                name=text("audit.entry.result", locale),
                value=f"[{text('audit.entry.jump', locale)}]({link})",
                inline=False,
            )
            thumbnail = await self.thumbnail(body)
            if thumbnail is not None:
                embed.set_thumbnail(url=thumbnail)
        if body.get("job_id"):
            embed.set_footer(text=text("audit.entry.job", locale, job=body["job_id"]))
        return embed
