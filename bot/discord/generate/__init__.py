"""Making images: the commands, the buttons and reactions on results, posting results, and
posting one again (``/show``).

A feature package in the manner of python-discord/bot's ``exts/<feature>/``: the modules are
private. :class:`Generate` builds the parts once from the few collaborators they use; :func:`setup`
adds the commands, buttons and listeners to the bot.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import QuotaSettings, Settings
from bot.db import Sessions
from bot.discord.generate._backends import ServerBackends, sd_bounds
from bot.discord.generate._buttons import ResultButtons
from bot.discord.generate._commands import add_commands
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._intakes import IntakeResumer
from bot.discord.generate._reactions import Reactions
from bot.discord.generate._show import ShowResult, show_command
from bot.discord.generate._status import FollowUps, StatusBoard
from bot.discord.generate._submit import Actions
from bot.discord.generate._uploads import UploadReader
from bot.discord.generate._views import DYNAMIC_ITEMS, route_modal
from bot.discord.i18n import Catalog
from bot.generation import FitChoice, ImageService
from bot.jobs import JobRunner
from bot.moderation.blocklist import Blocklist
from bot.providers.checks import SDLimits
from bot.providers.registry import configured
from bot.quotas.kept_defaults import KeptDefaults
from bot.quotas.ratelimit import MemberRequestLimiter

__all__ = ["Generate", "setup"]


@dataclass(frozen=True)
class Generate:
    """The feature's parts, each holding only what it uses."""

    catalog: Catalog
    quotas: QuotaSettings
    #: ``[images] fit``: how an upload is fitted to the size made, unless the member chooses.
    default_fit: FitChoice
    #: The commands' bounds of the Stable Diffusion options; None: no backend takes them.
    sd: SDLimits | None
    #: The one way in (every command, button and reaction ends in ``actions.submit``).
    actions: Actions
    buttons: ResultButtons
    #: The job runner's listener: posts results and keeps the status messages.
    delivery: Delivery
    resumer: IntakeResumer
    reactions: Reactions
    #: ``/show``: a member's result posted again, with live buttons.
    show: ShowResult

    @classmethod
    def build(
        cls,
        client: discord.Client,
        settings: Settings,
        catalog: Catalog,
        sessions: Sessions,
        runner: JobRunner,
        engine: ImageService,
    ) -> Generate:
        # One reader and one rate for every way in: the bounds hold for all of them together.
        uploads = UploadReader(engine)
        requests = MemberRequestLimiter(settings.jobs.member_requests_per_minute)
        servers = ServerBackends(
            engine.backends, runner.backends, allowed_sizes=settings.quotas.allowed_sizes
        )
        blocklist = Blocklist.build(sessions, settings.moderation.blocked_terms)
        actions = Actions(
            settings.quotas,
            engine.backends,
            runner,
            sessions,
            uploads,
            requests,
            servers,
            blocklist,
            catalog,
            KeptDefaults(sessions),
        )
        status = StatusBoard(
            catalog, FollowUps(client), runner.positions, runner.can_cancel_running
        )
        delivery = Delivery(client, catalog, sessions, engine.images, runner, status)
        return cls(
            catalog=catalog,
            quotas=settings.quotas,
            default_fit=settings.images.fit,
            sd=sd_bounds(
                [
                    limits
                    for backend in configured(settings).values()
                    if (limits := SDLimits.of(backend)) is not None
                ]
            ),
            actions=actions,
            buttons=ResultButtons(
                client, catalog, sessions, actions, delivery, settings.storage.retention_days
            ),
            delivery=delivery,
            resumer=IntakeResumer(
                catalog,
                sessions,
                runner,
                engine.backends,
                uploads,
                delivery,
                settings.storage.retention_days,
                blocklist,
            ),
            reactions=Reactions(client, catalog, actions, delivery, settings.discord.vary_emoji),
            show=ShowResult(catalog, sessions, delivery, requests),
        )


def setup(bot: commands.Bot, parts: Generate) -> None:
    """The commands (as the model allows), /show, the result buttons, the Remix modal,
    reactions."""
    add_commands(bot.tree, parts.catalog, parts.actions, parts.quotas, parts.default_fit, parts.sd)
    bot.tree.add_command(app_commands.guild_only()(show_command(parts.show)))
    bot.add_dynamic_items(*DYNAMIC_ITEMS)
    bot.add_listener(route_modal, "on_interaction")
    bot.add_listener(parts.reactions.on_raw_reaction_add, "on_raw_reaction_add")
