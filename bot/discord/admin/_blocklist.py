"""/moderation blocklist add|remove|list: the terms a server's admins refuse in prompts.

Manage Server, checked again when a subcommand runs (and before autocomplete shows the
server's terms: the list is the admins' to see). Answers are private. The rules and the
storage are :mod:`bot.moderation.blocklist`; this module only asks and answers.
"""

from __future__ import annotations

import io
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.db import Sessions
from bot.discord.admin._quota import require_manage_guild
from bot.discord.i18n import Catalog, text
from bot.discord.tree import MESSAGE_LIMIT, send_private
from bot.moderation import blocklist
from bot.moderation.blocklist import MAX_TERMS, Blocklist, normalize

#: Discord shows at most 25 autocomplete choices.
CHOICES = 25
#: The whole list, when it is too long for a message.
LIST_FILE = "blocked-terms.txt"
#: Room kept under the message limit for the last line ("…and N more").
_TAIL_ROOM = 200


def shown(term: str) -> str:
    """A term in a code span, so ``*`` and ``_`` show as typed (a term with a backtick in a
    double one)."""
    return f"`` {term} ``" if "`" in term else f"`{term}`"


class BlocklistGroup(app_commands.Group):
    """/moderation blocklist …"""

    def __init__(self, catalog: Catalog, sessions: Sessions, terms: Blocklist) -> None:
        super().__init__(
            name=text("blocklist", "cmd.moderation.blocklist.name"),
            description=text(
                "Refuse prompts that contain a term", "cmd.moderation.blocklist.description"
            ),
        )
        self.catalog, self.sessions, self.terms = catalog, sessions, terms

    @app_commands.command(
        name=text("add", "cmd.moderation.blocklist.add.name"),
        description=text(
            "Block a word or phrase in this server's prompts",
            "cmd.moderation.blocklist.add.description",
        ),
    )
    @app_commands.rename(term=text("term", "opt.term.name"))
    @app_commands.describe(
        term=text(
            "A word or phrase; * stands for any letters, e.g. cat* also blocks cats",
            "opt.term.description",
        )
    )
    async def add(self, interaction: discord.Interaction[Any], term: Range[str, 1, 200]) -> None:
        guild_id = require_manage_guild(interaction)
        change = await blocklist.add_term(self.sessions, guild_id, term, interaction.user.id)
        self.terms.forget(guild_id)
        key = "blocklist.added" if change.changed else "blocklist.already"
        reply = self.catalog.text(
            key, interaction.locale, term=shown(change.term), count=change.count, limit=MAX_TERMS
        )
        await send_private(interaction, reply)

    @app_commands.command(
        name=text("remove", "cmd.moderation.blocklist.remove.name"),
        description=text(
            "Allow a blocked term again", "cmd.moderation.blocklist.remove.description"
        ),
    )
    @app_commands.rename(term=text("term", "opt.term.name"))
    @app_commands.describe(
        term=text("One of this server's blocked terms", "opt.blocked_term.description")
    )
    async def remove(self, interaction: discord.Interaction[Any], term: Range[str, 1, 200]) -> None:
        guild_id = require_manage_guild(interaction)
        change = await blocklist.remove_term(self.sessions, guild_id, term)
        self.terms.forget(guild_id)
        key = "blocklist.removed" if change.changed else "blocklist.not_listed"
        reply = self.catalog.text(key, interaction.locale, term=shown(change.term))
        await send_private(interaction, reply)

    @remove.autocomplete("term")
    async def listed_terms(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        typed = normalize(current)
        terms = await blocklist.terms_of(self.sessions, interaction.guild_id)
        found = [term for term in terms if typed in term]
        return [Choice(name=term, value=term) for term in found[:CHOICES]]

    @app_commands.command(
        name=text("list", "cmd.moderation.blocklist.list.name"),
        description=text(
            "Show this server's blocked terms", "cmd.moderation.blocklist.list.description"
        ),
    )
    async def list_terms(self, interaction: discord.Interaction[Any]) -> None:
        guild_id = require_manage_guild(interaction)
        terms = await blocklist.terms_of(self.sessions, guild_id)
        reply, complete = self.list_text(interaction.locale, terms)
        whole = None
        if not complete:  # and every term in a file, one a line
            data = "".join(f"{term}\n" for term in terms).encode("utf-8")
            whole = discord.File(io.BytesIO(data), filename=LIST_FILE)
        await send_private(interaction, reply, file=whole)

    def list_text(self, locale: Any, terms: list[str]) -> tuple[str, bool]:
        """The terms, one a line, as many as fit one message, and whether that is all of them
        (the rest are counted, and sent as a file)."""
        catalog = self.catalog
        if terms:
            head = catalog.text("blocklist.list_title", locale, count=len(terms), limit=MAX_TERMS)
        else:
            head = catalog.text("blocklist.list_empty", locale)
        lines, size, complete = [head], len(head), True
        for number, term in enumerate(terms):
            line = f"- {shown(term)}"
            if size + len(line) + 1 > MESSAGE_LIMIT - _TAIL_ROOM:
                more = len(terms) - number
                lines.append(catalog.text("blocklist.list_more", locale, more=more))
                complete = False
                break
            lines.append(line)
            size += len(line) + 1
        if self.terms.operator:
            operator = len(self.terms.operator)
            lines.append(catalog.text("blocklist.list_operator", locale, count=operator))
        return "\n".join(lines), complete
