"""/history: a member's recent results in this server, privately, ten to a page.

Each line has the job's number (what ``/show`` takes), the prompt (trimmed), when it was made
(a Discord timestamp), its cost and a jump link to the result. The page buttons are
``DynamicItem``s (``ib:hist:<user>:<page>``) like the result buttons, so they keep working
after a restart; the custom_id is the client's to forge, so a click pages only the member's
own history (:class:`NotYourHistory` otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands

from bot.db import Sessions
from bot.discord.errors import NotYourHistory
from bot.discord.i18n import Catalog, text
from bot.discord.markup import discord_time
from bot.discord.tree import clip, reports_errors
from bot.jobs.member_results import ResultLine, ResultsPage, member_results
from bot.quotas.prices import format_usd

#: Characters of a prompt shown on its line.
PROMPT_CHARS = 60


@dataclass(eq=False)
class History:
    """What /history and its page buttons read with; the client's ``history``."""

    catalog: Catalog
    sessions: Sessions

    async def command(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        content, view = await self._page(interaction, interaction.user.id, 0)
        await interaction.response.send_message(content, view=view, ephemeral=True)

    @reports_errors
    async def turn(self, interaction: discord.Interaction[Any], user_id: int, page: int) -> None:
        """A page button: only the member's own history, in the message it is on."""
        if interaction.user.id != user_id or interaction.guild_id is None:
            raise NotYourHistory()
        content, view = await self._page(interaction, user_id, page)
        await interaction.response.edit_message(content=content, view=view)

    async def _page(
        self, interaction: discord.Interaction[Any], user_id: int, page: int
    ) -> tuple[str, discord.ui.View]:
        assert interaction.guild_id is not None
        found = await member_results(self.sessions, interaction.guild_id, user_id, page)
        locale = interaction.locale
        view = discord.ui.View(timeout=None)
        if not found.lines:
            return self.catalog.text("history.none", locale), view
        page_no, pages = found.page + 1, found.pages
        lines = [self.catalog.text("history.title", locale, page=page_no, pages=pages)]
        lines += [self._line(interaction.guild_id, line, locale) for line in found.lines]
        for button in page_buttons(self.catalog, locale, user_id, found):
            view.add_item(button)
        return clip("\n".join(lines)), view

    def _line(self, guild_id: int, line: ResultLine, locale: Any) -> str:
        prompt = " ".join(line.prompt.split())
        if len(prompt) > PROMPT_CHARS:
            prompt = prompt[: PROMPT_CHARS - 1] + "…"
        shown = discord.utils.escape_markdown(prompt) or self.catalog.text(
            "history.no_prompt", locale
        )
        link = f"https://discord.com/channels/{guild_id}/{line.channel_id}/{line.message_id}"
        jump = self.catalog.text("history.jump", locale)
        made = discord_time(line.made_at, "d")
        # The job's number is what /show takes.
        cost = format_usd(line.cost_micro_usd)
        return f"- #{line.job_id} · {shown} · {made} · {cost} · [{jump}]({link})"


def page_buttons(
    catalog: Catalog, locale: Any, user_id: int, found: ResultsPage
) -> list[HistoryPageButton]:
    """Previous and Next, each only where there is such a page."""
    buttons = []
    if found.page > 0:
        label = catalog.text("button.history.previous", locale)
        buttons.append(HistoryPageButton(user_id, found.page - 1, label))
    if found.page + 1 < found.pages:
        label = catalog.text("button.history.next", locale)
        buttons.append(HistoryPageButton(user_id, found.page + 1, label))
    return buttons


class HistoryPageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.compile(r"ib:hist:(?P<user>\d+):(?P<page>\d+)"),
):
    def __init__(self, user_id: int, page: int, label: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or str(page + 1),
                style=discord.ButtonStyle.secondary,
                custom_id=f"ib:hist:{user_id}:{page}",
            )
        )
        self.user_id, self.page = user_id, page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> HistoryPageButton:
        return cls(int(match["user"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        history: History = interaction.client.history
        await history.turn(interaction, self.user_id, self.page)


def history_command(history: History) -> app_commands.Command[Any, ..., None]:
    @app_commands.command(
        name=text("history", "cmd.history.name"),
        description=text("See your recent results in this server", "cmd.history.description"),
    )
    async def show_history(interaction: discord.Interaction[Any]) -> None:
        await history.command(interaction)

    return show_history
