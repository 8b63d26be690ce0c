"""/quota: server admins see and set the guild's image limits, within the operator's ceilings.

Discord hides the group from members without Manage Server (``default_member_permissions``), but
a server can override that in its Integrations settings, so every subcommand checks the
permission again when it runs. Answers are private and in the admin's language; the rules and
their storage live in :mod:`bot.quotas.admin`, the numbers in :mod:`bot.quotas.reports`.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.db.models import RoleLimit
from bot.discord.errors import MemberMissingPermissions
from bot.discord.i18n import Catalog, text
from bot.discord.markup import channel_list, discord_time
from bot.discord.tree import send_private
from bot.quotas import admin
from bot.quotas.policy import usd
from bot.quotas.prices import MICRO
from bot.quotas.reports import Overview, overview

#: The permission name as Discord's own interface shows it.
MANAGE_SERVER = "Manage Server"


def require_manage_guild(interaction: discord.Interaction[Any]) -> int:
    """The guild's id, if the member may manage it; else refuse (checked at run time too)."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.permissions.manage_guild:
        raise MemberMissingPermissions(permissions=MANAGE_SERVER)
    return interaction.guild_id


def count(number: int | None) -> str:
    """A whole number with thousands separators (every supported language uses commas)."""
    return f"{number or 0:,}"


def rule_line(catalog: Catalog, locale: Any, rule: RoleLimit) -> str:
    role = f"<@&{rule.role_id}>"
    if rule.exempt:
        return catalog.text("quota.show.role_exempt", locale, role=role)
    return catalog.text(
        "quota.show.role_limit", locale, role=role, limit=count(rule.images_per_day)
    )


def show_text(catalog: Catalog, locale: Any, quotas: QuotaSettings, view: Overview) -> str:
    """Every limit in force, marked when it is the operator's default, with its ceiling."""

    def line(key: str, **params: Any) -> str:
        return catalog.text(key, locale, **params)

    def marker(field: str) -> str:
        return line("quota.show.default") if view.is_default(field) else ""

    limits, period = view.limits, view.period
    anything = line("quota.show.any")
    lines = [
        line("quota.show.title"),
        line(
            "quota.show.guild_day",
            value=count(limits.images_per_day),
            marker=marker("images_per_day"),
            ceiling=count(quotas.max_images_per_day),
        ),
        line(
            "quota.show.guild_month",
            value=count(limits.images_per_month),
            marker=marker("images_per_month"),
            ceiling=count(quotas.max_images_per_month),
        ),
        line(
            "quota.show.spend",
            value=usd(limits.spend_per_month_micro),
            marker=marker("spend_per_month_micro"),
            ceiling=usd(round(quotas.max_spend_per_month_usd * MICRO)),
        ),
        line(
            "quota.show.member_day",
            value=count(limits.member_images_per_day),
            marker=marker("member_images_per_day"),
            ceiling=count(quotas.max_member_images_per_day),
        ),
        line(
            "quota.show.timezone",
            timezone=limits.timezone,
            marker=marker("timezone"),
            next_day=discord_time(period.next_day),
            next_month=discord_time(period.next_month),
        ),
        line("quota.show.channels", channels=channel_list(limits.allowed_channels))
        if limits.allowed_channels
        else line("quota.show.channels_all"),
        line(
            "quota.show.request",
            max_n=quotas.max_n,
            models=", ".join(quotas.allowed_models) or anything,
            sizes=", ".join(quotas.allowed_sizes) or anything,
        ),
        line("quota.show.roles") if view.rules else line("quota.show.roles_none"),
    ]
    lines += [rule_line(catalog, locale, rule) for rule in view.rules]
    return "\n".join(lines)


class ChannelsGroup(app_commands.Group):
    """/quota channels add|remove|clear: where images may be made (none chosen = everywhere)."""

    def __init__(self, catalog: Catalog, sessions: Sessions) -> None:
        super().__init__(
            name=text("channels", "cmd.quota.channels.name"),
            description=text(
                "Choose the channels where images can be made", "cmd.quota.channels.description"
            ),
        )
        self.catalog, self.sessions = catalog, sessions

    async def _change(self, interaction: discord.Interaction[Any], **change: Any) -> None:
        guild_id = require_manage_guild(interaction)
        catalog, locale = self.catalog, interaction.locale
        channels, changed = await admin.change_channels(self.sessions, guild_id, **change)
        lines = []
        if not changed and change.get("remove") is not None:
            lines.append(
                catalog.text("quota.channels.not_listed", locale, channel=f"<#{change['remove']}>")
            )
        if channels:
            lines.append(
                catalog.text("quota.channels.only", locale, channels=channel_list(channels))
            )
        else:
            lines.append(catalog.text("quota.channels.everywhere", locale))
        await send_private(interaction, "\n".join(lines))

    @app_commands.command(
        name=text("add", "cmd.quota.channels.add.name"),
        description=text(
            "Allow images in a channel (then only the chosen channels allow them)",
            "cmd.quota.channels.add.description",
        ),
    )
    @app_commands.rename(channel=text("channel", "opt.channel.name"))
    @app_commands.describe(channel=text("The text channel", "opt.channel.description"))
    async def add(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.TextChannel | discord.VoiceChannel,
    ) -> None:
        await self._change(interaction, add=channel.id)

    @app_commands.command(
        name=text("remove", "cmd.quota.channels.remove.name"),
        description=text(
            "Stop allowing images in a channel", "cmd.quota.channels.remove.description"
        ),
    )
    @app_commands.rename(channel=text("channel", "opt.channel.name"))
    @app_commands.describe(channel=text("The text channel", "opt.channel.description"))
    async def remove(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.TextChannel | discord.VoiceChannel,
    ) -> None:
        await self._change(interaction, remove=channel.id)

    @app_commands.command(
        name=text("clear", "cmd.quota.channels.clear.name"),
        description=text(
            "Allow images in every channel again", "cmd.quota.channels.clear.description"
        ),
    )
    async def clear(self, interaction: discord.Interaction[Any]) -> None:
        await self._change(interaction, clear=True)


class QuotaGroup(app_commands.Group):
    """/quota show|set|role|reset and /quota channels ..."""

    def __init__(self, catalog: Catalog, sessions: Sessions, quotas: QuotaSettings) -> None:
        super().__init__(
            name=text("quota", "cmd.quota.name"),
            description=text("See and set this server's image limits", "cmd.quota.description"),
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self.catalog, self.sessions, self.quotas = catalog, sessions, quotas
        self.add_command(ChannelsGroup(catalog, sessions))

    async def _show(self, interaction: discord.Interaction[Any], guild_id: int, head: str) -> None:
        view = await overview(self.sessions, self.quotas, guild_id)
        body = show_text(self.catalog, interaction.locale, self.quotas, view)
        await send_private(interaction, f"{head}\n{body}" if head else body)

    @app_commands.command(
        name=text("show", "cmd.quota.show.name"),
        description=text("Show this server's image limits", "cmd.quota.show.description"),
    )
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        await self._show(interaction, require_manage_guild(interaction), "")

    @app_commands.command(
        name=text("set", "cmd.quota.set.name"),
        description=text("Change this server's image limits", "cmd.quota.set.description"),
    )
    @app_commands.rename(
        images_per_day=text("images_per_day", "opt.images_per_day.name"),
        images_per_month=text("images_per_month", "opt.images_per_month.name"),
        spend_per_month=text("spend_per_month", "opt.spend_per_month.name"),
        member_images_per_day=text("member_images_per_day", "opt.member_images_per_day.name"),
        timezone=text("timezone", "opt.timezone.name"),
    )
    @app_commands.describe(
        images_per_day=text(
            "Images the whole server may make per day", "opt.images_per_day.description"
        ),
        images_per_month=text(
            "Images the whole server may make per month", "opt.images_per_month.description"
        ),
        spend_per_month=text(
            "Most the server may spend per month, in US dollars", "opt.spend_per_month.description"
        ),
        member_images_per_day=text(
            "Images each member may make per day", "opt.member_images_per_day.description"
        ),
        timezone=text(
            "When days and months start, e.g. Asia/Seoul (default UTC)", "opt.timezone.description"
        ),
    )
    async def set_limits(
        self,
        interaction: discord.Interaction[Any],
        images_per_day: Range[int, 0] | None = None,
        images_per_month: Range[int, 0] | None = None,
        spend_per_month: Range[float, 0] | None = None,
        member_images_per_day: Range[int, 0] | None = None,
        timezone: Range[str, 1, 64] | None = None,
    ) -> None:
        guild_id = require_manage_guild(interaction)
        changes = admin.LimitChanges(
            images_per_day, images_per_month, spend_per_month, member_images_per_day, timezone
        )
        await admin.apply_changes(self.sessions, self.quotas, guild_id, changes)
        head = self.catalog.text("quota.set.done", interaction.locale)
        await self._show(interaction, guild_id, head)

    @set_limits.autocomplete("timezone")
    async def timezone_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        return [Choice(name=zone, value=zone) for zone in admin.timezone_suggestions(current)]

    @app_commands.command(
        name=text("role", "cmd.quota.role.name"),
        description=text(
            "Give members with a role their own daily limit, or no limit",
            "cmd.quota.role.description",
        ),
    )
    @app_commands.rename(
        role=text("role", "opt.role.name"),
        images_per_day=text("images_per_day", "opt.images_per_day.name"),
        exempt=text("exempt", "opt.exempt.name"),
        remove=text("remove", "opt.remove.name"),
    )
    @app_commands.describe(
        role=text("The role the rule is for", "opt.role.description"),
        images_per_day=text(
            "Images each member with this role may make per day",
            "opt.role_images_per_day.description",
        ),
        exempt=text("True: members with this role have no daily limit", "opt.exempt.description"),
        remove=text("True: remove this role's rule", "opt.remove.description"),
    )
    async def role(
        self,
        interaction: discord.Interaction[Any],
        role: discord.Role,
        images_per_day: Range[int, 0] | None = None,
        exempt: bool | None = None,
        remove: bool = False,
    ) -> None:
        guild_id = require_manage_guild(interaction)
        sessions, catalog, locale = self.sessions, self.catalog, interaction.locale
        mention = role.mention
        view = await overview(sessions, self.quotas, guild_id)
        default = view.limits.member_images_per_day
        shown = count(default)
        if remove:
            removed = await admin.remove_role_rule(sessions, guild_id, role.id)
            key = "quota.role.removed" if removed else "quota.role.no_rule"
            await send_private(interaction, catalog.text(key, locale, role=mention, limit=shown))
            return
        if images_per_day is None and exempt is None:
            current = next((r for r in view.rules if r.role_id == role.id), None)
            if current is None:
                reply = catalog.text("quota.role.no_rule", locale, role=mention, limit=shown)
            else:
                reply = rule_line(catalog, locale, current)
            await send_private(interaction, reply)
            return
        rule = await admin.set_role_rule(
            sessions, self.quotas, guild_id, role.id, images_per_day=images_per_day, exempt=exempt
        )
        if rule is None:
            reply = catalog.text("quota.role.removed", locale, role=mention, limit=shown)
        elif rule.exempt:
            reply = catalog.text("quota.role.exempt_done", locale, role=mention)
        else:
            limit = rule.images_per_day
            reply = catalog.text("quota.role.limit_done", locale, role=mention, limit=count(limit))
        await send_private(interaction, reply)

    @app_commands.command(
        name=text("reset", "cmd.quota.reset.name"),
        description=text(
            "Let a member start today's image count again", "cmd.quota.reset.description"
        ),
    )
    @app_commands.rename(member=text("member", "opt.member.name"))
    @app_commands.describe(member=text("The member", "opt.member.description"))
    async def reset(self, interaction: discord.Interaction[Any], member: discord.Member) -> None:
        guild_id = require_manage_guild(interaction)
        await admin.reset_member(self.sessions, guild_id, member.id)
        reply = self.catalog.text("quota.reset.done", interaction.locale, member=member.mention)
        await send_private(interaction, reply)
