"""The discord.py client, connected wherever the config says, holding the bot's dependencies.

``api_base_url`` and ``gateway_url`` are config keys because large deployments put REST proxies
and self-hosted gateways in front of Discord, and because the tests point them at a fake Discord
on 127.0.0.1. discord.py reads both from class attributes, so they are set before login.

A process that runs given gateway shards is a :class:`ShardedImageBot` (discord.py's
AutoShardedBot); the one-process default stays a plain :class:`ImageBot` with one connection. A
worker process is an ImageBot that logs in over REST and never connects to the gateway
(:meth:`ImageBot.run_without_gateway`): results, DMs and follow-ups are all REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.config import TOKEN_ENV, DiscordSettings, Settings
from bot.db import installation
from bot.db.engine import Storage
from bot.discord import admin, generate, member
from bot.discord.i18n import BotTranslator, Catalog
from bot.discord.tree import BotTree
from bot.errors import BotError, ConfigError
from bot.generation import ImageService
from bot.jobs import JobListener, JobRunner
from bot.jobs.processes import ProcessInfo
from bot.jobs.retention import prune_every_hour
from bot.ops.metrics import Metrics
from bot.ops.observe import ObservingListener
from bot.quotas.alerts import SpendAlerts

log = logging.getLogger(__name__)

# The bot never joins voice: discord.py's start-up warnings about missing voice libraries
# (PyNaCl, davey) would only send operators looking for a problem that is not there.
discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False


def point_discord_at(settings: DiscordSettings) -> None:
    """Make discord.py talk to the configured REST base and gateway (process-wide)."""
    discord.http.Route.BASE = settings.api_base_url.rstrip("/")
    if settings.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def bot_intents() -> discord.Intents:
    """The least the bot needs: guilds (channels, permissions) and reactions. None privileged."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    return intents


class ImageBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        *,
        engine: ImageService,
        storage: Storage,
        runner: JobRunner,
        catalog: Catalog,
        sync_commands: bool = True,
        start_jobs: bool = True,
        metrics: Metrics | None = None,
        process: ProcessInfo | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            tree_cls=BotTree,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.settings = settings
        self.engine = engine
        self.storage = storage
        self.runner = runner
        self.catalog = catalog
        self.sync_commands = sync_commands
        self.start_jobs = start_jobs
        self.metrics = metrics
        #: Who this process is among those sharing the database (its role, its shards).
        self.process = process or ProcessInfo()
        self._closed = asyncio.Event()
        self.generate = generate.Generate.build(
            self, settings, catalog, storage.sessions, runner, engine
        )
        #: What the result buttons call (bot.discord.generate._views.ResultActions).
        self.actions = self.generate.buttons
        self.delivery = self.generate.delivery
        #: What the /history page buttons call (bot.discord.member._history).
        self.history = member.History(catalog, storage.sessions)
        #: The listener that sends spend alerts, when [alerts] has a destination.
        self.alerting: admin.AlertingListener | None = None
        tree = self.tree
        assert isinstance(tree, BotTree)
        tree.catalog = catalog

    async def setup_hook(self) -> None:
        await self.tree.set_translator(BotTranslator(self.catalog))
        generate.setup(self, self.generate)
        admin.setup(
            self.tree,
            self.catalog,
            self.storage.sessions,
            self.settings.quotas,
            self.engine.images,
            self.runner.content_rules,
            blocklist=self.generate.actions.blocklist,
        )
        backends = (self.engine.backends, self.runner.backends)
        member.setup(
            self,
            self.history,
            self.catalog,
            self.storage.sessions,
            self.settings.quotas,
            backends,
            self.generate.actions.defaults,
            admin.settings_parts(self.catalog, self.storage.sessions, *backends),
        )
        listener: JobListener = self.delivery
        if self.metrics is not None:
            listener = ObservingListener(self.delivery, self.metrics)
        sender = admin.AlertSender(self, self.catalog, self.settings.alerts)
        if sender.configured:
            spend_alerts = SpendAlerts(self.storage.sessions, self.settings.quotas)
            listener = self.alerting = admin.AlertingListener(listener, spend_alerts, sender)
        self.runner.set_listener(listener)
        self.runner.set_intake_recovery(self.generate.resumer)
        if self.sync_commands:
            await self.sync_application_commands()
        if self.start_jobs:
            await self.runner.start()
            # With the runner, on its background tasks: stopped when the runner closes.
            self.runner.spawn(
                prune_every_hour(self.storage, self.settings.storage.retention_days),
                name="retention",
            )
            poster = admin.AuditPoster(self, self.catalog, self.storage.sessions)
            self.runner.spawn(poster.run_forever(), name="audit-poster")
            self.delivery.status.start()

    def gateway_problem(self) -> str | None:
        """None while connected to Discord's gateway, else why not (for /healthz). A worker
        has no gateway connection: logged in over REST is all it needs."""
        if self.is_closed():
            return "the Discord connection is closed"
        if not self.process.runs_gateway:
            return None if self.user is not None else "not logged in to Discord yet"
        if not self.is_ready():
            return "not connected to the Discord gateway yet"
        if self.ws is None or not self.ws.open:
            return "the Discord gateway connection dropped; reconnecting"
        return None

    async def run_without_gateway(self, token: str) -> None:
        """Log in over REST (setup_hook runs: the jobs start) and stay until closed, with no
        gateway connection: what a worker process does."""
        await self.login(token)
        log.info("logged in as %s over REST only (no gateway connection): running jobs", self.user)
        await self._closed.wait()

    async def close(self) -> None:
        # Jobs first, while Discord still takes their last words: on PostgreSQL a stop tells
        # the requesters of its running jobs (bot.jobs.leases). Closed already on a clean stop
        # (bot.app), where running jobs had their grace; a second close does nothing more.
        await self.runner.close()
        await self.delivery.status.stop()
        await super().close()
        self._closed.set()

    async def sync_application_commands(self, *, force: bool = False) -> None:
        """To the development guild only when one is set (instant), else globally.

        Only when the commands changed since the last sync (any process's: the installation
        table keeps a hash), unless ``force``d: every process of a scaled-out bot starts with
        the same commands, and Discord allows only so many registrations a day.
        """
        guild_id = self.settings.discord.dev_guild_id
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        synced_as = await self._command_digest(guild)
        key = installation.COMMAND_SYNC_KEY
        async with installation.changing_value(self.storage.sessions, key, synced_as) as changed:
            if not (changed or force):
                log.info("application commands unchanged since the last sync; not synced again")
                return
            synced = await self.tree.sync(guild=guild)
        if guild_id:
            log.info("synced %d commands to guild %d", len(synced), guild_id)
        else:
            log.info("synced %d commands globally", len(synced))

    async def _command_digest(self, guild: discord.abc.Snowflake | None) -> str:
        """What a sync would register, where, for which application: as tree.sync builds it."""
        tree = self.tree
        translator = tree.translator
        commands = tree._get_all_commands(guild=guild)
        if translator is not None:
            payload = [await c.get_translated_payload(tree, translator) for c in commands]
        else:
            payload = [c.to_dict(tree) for c in commands]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        target = f"guild {guild.id}" if guild is not None else "global"
        digest = hashlib.sha256(text.encode()).hexdigest()
        return f"{self.application_id} {target} {digest}"

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected as %s (id %s) in %d guilds",
            user,
            user.id if user else "?",
            len(self.guilds),
        )


class ShardedImageBot(ImageBot, commands.AutoShardedBot):
    """The bot for the gateway shards this process runs (``shard_ids`` of ``shard_count``, or
    all of them): one connection per shard; each guild's events come on its shard's."""

    def gateway_problem(self) -> str | None:
        """None while every shard of this process is connected (for /healthz)."""
        if self.is_closed():
            return "the Discord connection is closed"
        if not self.is_ready():
            return "not connected to the Discord gateway yet (every shard)"
        for shard_id in self.shard_ids or range(self.shard_count or 1):
            shard = self.get_shard(shard_id)
            if shard is None or shard.is_closed():
                return f"the Discord gateway connection of shard {shard_id} dropped; reconnecting"
        return None


def bot_class(process: ProcessInfo) -> type[ImageBot]:
    """The sharded bot when this process runs given shards; else the one-connection bot."""
    return ShardedImageBot if process.shard_count is not None else ImageBot


def shard_options(process: ProcessInfo) -> dict[str, Any]:
    """discord.py's options for the shards this process runs (none when it runs no shards)."""
    if process.shard_count is None:
        return {}
    ids = list(process.shard_ids) if process.shard_ids is not None else None
    return {"shard_count": process.shard_count, "shard_ids": ids}


@contextlib.contextmanager
def login_errors(settings: Settings) -> Iterator[None]:
    """Turn "Discord refused us" into one line an operator can act on (no traceback).

    A wrong token is refused by REST (401, discord.py's LoginFailure) or, should REST accept it,
    by the gateway (close code 4004): a configuration error (exit 2). An unreachable Discord (or
    a wrong ``api_base_url``) fails the first request: a run-time failure (exit 1).
    """
    rejected = ConfigError(
        f"Discord rejected the bot token ({TOKEN_ENV} or [discord] token); copy the token "
        "again from the Developer Portal (Bot > Reset Token)"
    )
    try:
        yield
    except discord.LoginFailure:
        raise rejected from None
    except discord.ConnectionClosed as exc:
        if exc.code == 4004:
            raise rejected from None
        raise
    except aiohttp.ClientConnectionError as exc:
        raise BotError(f"cannot reach Discord at {settings.discord.api_base_url}: {exc}") from None
