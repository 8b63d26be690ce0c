"""Spend alerts end to end: the operator hears, through a Discord webhook and/or a channel, when
the month's total spend passes 50 %, 80 % and 100 % of the cap, and when a server reaches its
budget; each once. dall-e-2 at 1024x1024 costs $0.02 an image; every job here makes two.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from bot.config import AlertsSettings, Settings
from bot.logs import RedactSecrets, TextFormatter
from bot.testing.discord import FakeChannel, FakeDiscord, StoredMessage
from bot.testing.harness import ROOMY_QUOTAS, Harness, made, run_bot
from bot.testing.openai_api import FakeImagesAPI


@pytest.fixture
def alerts_channel(fake_discord: FakeDiscord) -> FakeChannel:
    return fake_discord.add_channel(name="operator-alerts")


@pytest.fixture
def hook_channel(fake_discord: FakeDiscord) -> FakeChannel:
    return fake_discord.add_channel(name="webhook-alerts")


async def start(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    alerts: AlertsSettings,
    **quotas: float,
) -> AsyncIterator[Harness]:
    settings = settings_factory(quotas=dataclasses.replace(ROOMY_QUOTAS, **quotas), alerts=alerts)
    async with run_bot(fake_discord, fake_images_api, settings) as h:
        yield h
    assert fake_discord.spec_violations == []


async def job(h: Harness) -> None:
    """A member makes two images; then the spend check after it is done."""
    await made(h, h.fake.user, n=2)
    assert h.bot.alerting is not None
    await h.bot.alerting.wait_checks()


def said(h: Harness, channel: FakeChannel, source: str) -> list[str]:
    found: list[StoredMessage] = h.fake.messages(channel, sources=(source,))
    return [m.content for m in found]


@pytest.fixture
async def total_cap(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    alerts_channel: FakeChannel,
    hook_channel: FakeChannel,
) -> AsyncIterator[Harness]:
    alerts = AlertsSettings(
        webhook_url=fake_discord.add_webhook(hook_channel), discord_channel_id=alerts_channel.id
    )
    async for h in start(
        fake_discord, fake_images_api, settings_factory, alerts, total_spend_per_month_usd=0.20
    ):
        yield h


async def test_the_total_spend_is_told_at_50_80_and_100_percent_once_each(
    total_cap: Harness, alerts_channel: FakeChannel, hook_channel: FakeChannel
) -> None:
    h = total_cap
    told: list[int] = []
    for _ in range(5):  # 20 %, 40 %, 60 %, 80 %, 100 % of $0.20
        await job(h)
        told.append(len(said(h, alerts_channel, "channel")))
    assert told == [0, 0, 1, 2, 3]  # 50 % once (not again at 80 % - 1 job), then 80 %, 100 %
    texts = said(h, alerts_channel, "channel")
    assert [t.split("passed ")[1].split("%")[0] for t in texts] == ["50", "80", "100"]
    assert texts[0].startswith("Spend alert: the total spend this month (")
    assert "$0.12 of $0.2." in texts[0]
    # The webhook got the same, as messages of the webhook (not of the bot).
    assert said(h, hook_channel, "webhook") == texts
    hooked = h.fake.messages(hook_channel, sources=("webhook",))
    assert all(m.allowed_mentions == {"parse": []} for m in hooked)
    assert all(
        m.allowed_mentions == {"parse": []}
        for m in h.fake.messages(alerts_channel, sources=("channel",))
    )


@pytest.fixture
async def guild_budget(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    alerts_channel: FakeChannel,
) -> AsyncIterator[Harness]:
    alerts = AlertsSettings(discord_channel_id=alerts_channel.id)
    async for h in start(
        fake_discord, fake_images_api, settings_factory, alerts, spend_per_month_usd=0.08
    ):
        yield h


async def test_a_server_reaching_its_budget_is_told_once(
    guild_budget: Harness, alerts_channel: FakeChannel
) -> None:
    h = guild_budget
    await job(h)
    assert said(h, alerts_channel, "channel") == []
    await job(h)  # $0.08 of $0.08
    (text,) = said(h, alerts_channel, "channel")
    assert text.startswith(f"Spend alert: the server {h.fake.guild.name} has reached its budget")
    assert "$0.08 of $0.08" in text
    # The budget now refuses more; a check after another recorded job says nothing again.
    assert h.bot.alerting is not None
    assert await h.bot.alerting.alerts.due(h.fake.guild.id) == []


@pytest.fixture
async def broken_webhook(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    alerts_channel: FakeChannel,
    hook_channel: FakeChannel,
) -> AsyncIterator[Harness]:
    url = fake_discord.add_webhook(hook_channel) + "wrong"  # Discord answers 401 50027
    alerts = AlertsSettings(webhook_url=url, discord_channel_id=alerts_channel.id)
    async for h in start(
        fake_discord, fake_images_api, settings_factory, alerts, total_spend_per_month_usd=0.06
    ):
        yield h


async def test_a_failing_webhook_fails_no_job_and_its_url_is_never_logged(
    broken_webhook: Harness,
    alerts_channel: FakeChannel,
    hook_channel: FakeChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = broken_webhook
    url = h.settings.alerts.webhook_url
    token = url.rsplit("/", 1)[1]
    # As `python -m bot run` logs (bot.cli passes the webhook URL as a secret), at DEBUG.
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactSecrets([url]))
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        await job(h)  # $0.04 of $0.06: 66 %, the 50 % alert
    finally:
        logging.getLogger().removeHandler(handler)
    assert said(h, hook_channel, "webhook") == []
    (text,) = said(h, alerts_channel, "channel")  # the other destination still hears
    assert "passed 50%" in text
    logged = output.getvalue()
    assert "the webhook failed (HTTP 401, code 50027)" in logged
    assert token not in logged
    # The bot's own lines never carry it, whatever the handler.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert ours and not any(token in line for line in ours)
