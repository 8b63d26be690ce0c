"""Server admins' commands: /quota (limits), /usage (what was used), /moderation (content
rules), and /settings server-backend (a part of members' /settings, see
:func:`settings_parts`).

A feature package in the manner of python-discord/bot's ``exts/<feature>/``: the modules are
private; :func:`setup` adds the feature's commands to the bot's tree.
"""

from __future__ import annotations

from typing import Any

from discord import app_commands

from bot.config import QuotaSettings
from bot.db import Sessions
from bot.discord.admin._alerts import AlertingListener, AlertSender
from bot.discord.admin._audit import audit_channel_command
from bot.discord.admin._audit_poster import AuditPoster
from bot.discord.admin._blocklist import BlocklistGroup
from bot.discord.admin._moderation import ModerationGroup, ModerationPart
from bot.discord.admin._nsfw import NsfwGroup
from bot.discord.admin._quota import QuotaGroup
from bot.discord.admin._settings import server_backend_command
from bot.discord.admin._usage import UsageGroup
from bot.discord.i18n import Catalog
from bot.imaging import ImageWorker
from bot.jobs.backends import BackendChoice
from bot.moderation.blocklist import Blocklist
from bot.moderation.nsfw import ContentRules
from bot.providers.registry import BackendSet

__all__ = ["AlertSender", "AlertingListener", "AuditPoster", "settings_parts", "setup"]


def setup(
    tree: app_commands.CommandTree[Any],
    catalog: Catalog,
    sessions: Sessions,
    quotas: QuotaSettings,
    images: ImageWorker,
    content_rules: ContentRules | None = None,
    blocklist: Blocklist | None = None,
) -> None:
    """/quota and /usage; /moderation with the parts whose collaborators are given
    (``content_rules``: the job runner's, told when the NSFW rules change; ``blocklist``: the
    terms in force, the operator's among them). ``images`` is the bot's image worker: /usage
    draws its charts there."""
    groups: list[app_commands.Group] = [
        QuotaGroup(catalog, sessions, quotas),
        UsageGroup(catalog, sessions, quotas, images),
    ]
    # /moderation's parts, one per feature (blocked terms, NSFW rules, the audit channel).
    moderation: list[ModerationPart] = [
        BlocklistGroup(catalog, sessions, blocklist or Blocklist(sessions)),
        audit_channel_command(catalog, sessions),
    ]
    if content_rules is not None:
        moderation.append(NsfwGroup(catalog, sessions, content_rules))
    if moderation:
        groups.append(ModerationGroup(moderation))
    for group in groups:
        tree.add_command(app_commands.guild_only()(group))


def settings_parts(
    catalog: Catalog, sessions: Sessions, backends: BackendSet, choice: BackendChoice
) -> list[app_commands.Command[Any, ..., None]]:
    """The admins' parts of /settings: ``server-backend`` when there is more than one backend
    to choose from."""
    if len(backends.names()) <= 1:
        return []
    return [server_backend_command(catalog, sessions, backends, choice)]
