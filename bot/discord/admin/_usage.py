"""/usage me (any member) and /usage server (admins): what was used and what is left.

Discord cannot have ``/usage`` be both a command and the parent of ``/usage server``, so both are
subcommands of one group. ``default_member_permissions`` applies to a whole top-level command, so
the group stays visible to everyone and ``/usage server`` checks Manage Server when it runs.
Numbers come from :mod:`bot.quotas.reports`, which reads them the way the quota check does.
Both attach a chart of the last 30 days (:mod:`bot.charts`), drawn in the image worker's threads:
a chart takes a few hundred milliseconds of CPU, which would stall the event loop. A chart that
fails to draw is logged and left out; the numbers are still sent.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import discord
from discord import app_commands

from bot.charts import DayUsage, member_chart, server_chart
from bot.config import QuotaSettings
from bot.db import Sessions
from bot.discord.admin._quota import count, require_manage_guild
from bot.discord.i18n import Catalog, text
from bot.discord.markup import discord_time
from bot.discord.tree import send_private
from bot.imaging import ImageWorker
from bot.quotas.history import CHART_DAYS, daily_usage
from bot.quotas.policy import usd, zone
from bot.quotas.reports import (
    MemberUsage,
    ServerReport,
    ledger_csv,
    ledger_rows,
    member_usage,
    server_report,
)

log = logging.getLogger(__name__)


def chart_name(kind: str, owner: int, days: list[DayUsage]) -> str:
    """``usage-server-<guild>-<local today>.png`` (or ``member``)."""
    return f"usage-{kind}-{owner}-{days[-1].day:%Y-%m-%d}.png"


def _span(days: list[DayUsage]) -> str:
    return f"{days[0].day:%b %d} to {days[-1].day:%b %d}"


def me_text(catalog: Catalog, locale: Any, used: MemberUsage) -> str:
    """The member's day, then the server's day and month, each with when it resets."""
    period, limits = used.period, used.limits
    day, month = discord_time(period.next_day), discord_time(period.next_month)
    if used.member_limit is None:
        mine = catalog.text("usage.me.member_exempt", locale, used=used.member_used)
    else:
        mine = catalog.text(
            "usage.me.member",
            locale,
            used=count(used.member_used),
            limit=count(used.member_limit),
            remaining=count(used.member_remaining),
            resets=day,
        )
    return "\n".join(
        [
            mine,
            catalog.text(
                "usage.me.guild_day",
                locale,
                remaining=count(used.guild_day_remaining),
                limit=count(limits.images_per_day),
                resets=day,
            ),
            catalog.text(
                "usage.me.guild_month",
                locale,
                remaining=count(used.guild_month_remaining),
                limit=count(limits.images_per_month),
                spend_left=usd(used.spend_remaining),
                spend_limit=usd(limits.spend_per_month_micro),
                resets=month,
            ),
        ]
    )


def server_text(catalog: Catalog, locale: Any, report: ServerReport) -> str:
    """Totals, outcomes, top members and models of this month."""

    def line(key: str, **params: Any) -> str:
        return catalog.text(key, locale, **params)

    limits, period = report.limits, report.period
    lines = [
        line(
            "usage.server.title",
            start=discord_time(period.month_start, "D"),
            timezone=limits.timezone,
            resets=discord_time(period.next_month),
        ),
        line(
            "usage.server.images",
            images=count(report.images),
            limit=count(limits.images_per_month),
            today=count(report.images_today),
            day_limit=count(limits.images_per_day),
            pending=count(report.pending_images),
        ),
        line(
            "usage.server.spend",
            spend=usd(report.cost_micro),
            limit=usd(limits.spend_per_month_micro),
        ),
        line("usage.server.jobs", total=count(report.jobs), **report.outcomes),
    ]
    if report.possibly_billed_jobs:
        lines.insert(
            3,
            line(
                "usage.server.possibly_billed",
                spend=usd(report.possibly_billed_micro),
                jobs=count(report.possibly_billed_jobs),
            ),
        )
    if not report.top_members:
        lines.append(line("usage.server.empty"))
        return "\n".join(lines)
    lines.append(line("usage.server.top"))
    for rank, member in enumerate(report.top_members, 1):
        lines.append(
            line(
                "usage.server.member",
                rank=rank,
                member=f"<@{member.user_id}>",
                images=count(member.images),
                cost=usd(member.cost_micro),
            )
        )
    lines.append(line("usage.server.models"))
    for model in report.models:
        lines.append(
            line(
                "usage.server.model",
                model=model.model,
                jobs=count(model.jobs),
                images=count(model.images),
                cost=usd(model.cost_micro),
            )
        )
    return "\n".join(lines)


class UsageGroup(app_commands.Group):
    def __init__(
        self, catalog: Catalog, sessions: Sessions, quotas: QuotaSettings, images: ImageWorker
    ) -> None:
        super().__init__(
            name=text("usage", "cmd.usage.name"),
            description=text("Images used and what is left", "cmd.usage.description"),
        )
        self.catalog, self.sessions, self.quotas = catalog, sessions, quotas
        self.images = images

    async def _chart(self, name: str, draw: Any, *args: Any, **kwargs: Any) -> list[discord.File]:
        """The chart as an attachment, drawn in the image worker; none if drawing failed."""
        try:
            data: bytes = await self.images.run(draw, *args, **kwargs)
        except Exception:
            log.exception("the usage chart %s could not be drawn", name)
            return []
        return [discord.File(io.BytesIO(data), filename=name)]

    @app_commands.command(
        name=text("me", "cmd.usage.me.name"),
        description=text(
            "Your images today and what this server has left", "cmd.usage.me.description"
        ),
    )
    async def me(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        await interaction.response.defer(ephemeral=True, thinking=True)
        roles = getattr(interaction.user, "roles", ())
        guild_id, user_id = interaction.guild_id, interaction.user.id
        used = await member_usage(
            self.sessions, self.quotas, guild_id, user_id, [role.id for role in roles]
        )
        days = await daily_usage(
            self.sessions, guild_id, used.limits.timezone, user_id=user_id, days=CHART_DAYS
        )
        chart = await self._chart(
            chart_name("member", user_id, days),
            member_chart,
            days,
            title=f"Your images, {_span(days)} ({used.limits.timezone})",
            daily_limit=used.member_limit,
        )
        await send_private(
            interaction, me_text(self.catalog, interaction.locale, used), files=chart
        )

    @app_commands.command(
        name=text("server", "cmd.usage.server.name"),
        description=text(
            "This month's image usage of the whole server (Manage Server)",
            "cmd.usage.server.description",
        ),
    )
    @app_commands.rename(csv=text("csv", "opt.csv.name"))
    @app_commands.describe(
        csv=text("True: attach this month's ledger as a CSV file", "opt.csv.description")
    )
    async def server(self, interaction: discord.Interaction[Any], csv: bool = False) -> None:
        guild_id = require_manage_guild(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        sessions, catalog, locale = self.sessions, self.catalog, interaction.locale
        report = await server_report(sessions, self.quotas, guild_id)
        content = server_text(catalog, locale, report)
        limits = report.limits
        days = await daily_usage(sessions, guild_id, limits.timezone, days=CHART_DAYS)
        chart = await self._chart(
            chart_name("server", guild_id, days),
            server_chart,
            days,
            title=f"Images and spend, {_span(days)} ({limits.timezone})",
            images_per_day=limits.images_per_day,
            spend_budget_micro=limits.spend_per_month_micro,
        )
        if not csv:
            await send_private(interaction, content, files=chart)
            return
        rows = await ledger_rows(sessions, guild_id, report.period)
        # A busy server's month is thousands of rows: format them off the event loop.
        data = (await asyncio.to_thread(ledger_csv, rows)).encode("utf-8")
        if len(data) > interaction.filesize_limit:
            megabytes = round(len(data) / 1_000_000, 1)
            extra = catalog.text("usage.server.csv_too_large", locale, size=megabytes)
            await send_private(interaction, f"{content}\n{extra}", files=chart)
            return
        local = report.period.month_start.astimezone(zone(report.limits.timezone))
        name = f"usage-{guild_id}-{local:%Y-%m}.csv"
        extra = catalog.text("usage.server.csv", locale, rows=len(rows))
        file = discord.File(io.BytesIO(data), filename=name)
        await send_private(interaction, f"{content}\n{extra}", files=[*chart, file])
