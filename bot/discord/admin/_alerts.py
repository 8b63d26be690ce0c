"""Spend alerts as the operator reads them: sent to ``[alerts] webhook_url`` (a Discord webhook)
and/or posted in ``[alerts] discord_channel_id``.

:class:`AlertingListener` wraps the job listener: after a job's end is recorded (its cost with
it) it checks, in a task of its own, which alerts are due (:class:`bot.quotas.alerts.SpendAlerts`
claims each once across processes) and sends them. The job never waits for the check, and a
failing webhook or channel is logged without the webhook's URL (a secret) and fails nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from bot.config import AlertsSettings
from bot.db.models import Job
from bot.discord.i18n import Catalog
from bot.errors import BotError
from bot.jobs.dispatcher import Place
from bot.jobs.listener import JobListener
from bot.jobs.spool import Posted
from bot.providers import GeneratedImage
from bot.providers.progress import ProgressUpdate
from bot.quotas.alerts import SpendAlert, SpendAlerts
from bot.quotas.policy import usd

log = logging.getLogger(__name__)

#: Alerts are written for the operator, in English (like the logs).
ALERT_LOCALE = "en-US"


class AlertSender:
    """Words a spend alert and sends it to every configured destination."""

    def __init__(self, client: discord.Client, catalog: Catalog, settings: AlertsSettings) -> None:
        self.client, self.catalog, self.settings = client, catalog, settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.webhook_url or self.settings.discord_channel_id)

    def wording(self, alert: SpendAlert) -> str:
        params = {
            "percent": alert.percent,
            "month": alert.month,
            "spent": usd(alert.spent_micro),
            "limit": usd(alert.limit_micro),
        }
        if alert.guild_id is None:
            return self.catalog.text("alerts.total", ALERT_LOCALE, **params)
        guild = self.client.get_guild(alert.guild_id)
        name = guild.name if guild is not None else str(alert.guild_id)
        return self.catalog.text("alerts.guild", ALERT_LOCALE, guild=name, **params)

    async def send(self, alert: SpendAlert) -> None:
        content = self.wording(alert)
        none = discord.AllowedMentions.none()
        if self.settings.webhook_url:
            try:
                webhook = discord.Webhook.from_url(self.settings.webhook_url, client=self.client)
                await webhook.send(content, wait=True, allowed_mentions=none)
            except (TimeoutError, discord.HTTPException, ValueError, OSError) as error:
                log.warning("spend alert %s: the webhook failed (%s)", alert.key, _described(error))
        if self.settings.discord_channel_id:
            channel = self.client.get_partial_messageable(self.settings.discord_channel_id)
            try:
                await channel.send(content, allowed_mentions=none)
            except (TimeoutError, discord.HTTPException, OSError) as error:
                log.warning(
                    "spend alert %s: posting in channel %d failed (%s)",
                    alert.key,
                    self.settings.discord_channel_id,
                    _described(error),
                )


def _described(error: BaseException) -> str:
    """An error as logged: Discord's status and code, never a URL (the webhook's is secret)."""
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status}, code {error.code}"
    return type(error).__name__


class AlertingListener:
    """A job listener that checks spend alerts once each job's end is recorded."""

    def __init__(self, inner: JobListener, alerts: SpendAlerts, sender: AlertSender) -> None:
        self.inner, self.alerts, self.sender = inner, alerts, sender
        self._checks: set[asyncio.Task[None]] = set()

    def _check_after(self, job: Job) -> None:
        task = asyncio.create_task(self._check(job.guild_id), name=f"spend-alerts-{job.id}")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, guild_id: int | None) -> None:
        try:
            for alert in await self.alerts.due(guild_id):
                log.info("spend alert %s is due: sending it", alert.key)
                await self.sender.send(alert)
        except Exception:
            log.exception("checking the spend alerts failed")

    async def wait_checks(self) -> None:
        """Until the checks started so far are done (tests; a clean stop)."""
        while self._checks:
            await asyncio.gather(*list(self._checks), return_exceptions=True)

    async def job_queued(self, job: Job, place: Place | None) -> None:
        await self.inner.job_queued(job, place)

    async def job_succeeded(self, job: Job, images: list[GeneratedImage]) -> Posted:
        return await self.inner.job_succeeded(job, images)

    async def job_recorded(self, job: Job) -> None:
        try:
            await self.inner.job_recorded(job)
        finally:
            self._check_after(job)

    async def job_failed(self, job: Job, error: BotError) -> None:
        try:
            await self.inner.job_failed(job, error)
        finally:
            if job.cost_micro_usd:  # possibly billed: its estimate stays in the spend
                self._check_after(job)

    async def job_interrupted(self, job: Job) -> None:
        try:
            await self.inner.job_interrupted(job)
        finally:
            self._check_after(job)

    async def job_post_interrupted(self, job: Job) -> None:
        await self.inner.job_post_interrupted(job)

    async def job_cancelled(self, job: Job) -> None:
        await self.inner.job_cancelled(job)

    def job_progress(self, job: Job, update: ProgressUpdate) -> None:
        self.inner.job_progress(job, update)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
