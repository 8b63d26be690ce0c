"""/usage me and /usage server end to end: the numbers members and admins see match the ledger.

Images come from real /imagine requests through the fake Discord and image API, so the numbers
are the ones the quota check used; a failed request is in the ledger but counts for nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.config import QuotaSettings, Settings
from bot.discord.markup import discord_time
from bot.quotas.policy import periods
from bot.quotas.reports import CSV_COLUMNS
from bot.testing.discord import FakeDiscord, FakeMember, StoredMessage
from bot.testing.harness import Harness, made, quota, run_bot, synced
from bot.testing.openai_api import FakeImagesAPI

QUOTAS = QuotaSettings(
    images_per_day=50,
    images_per_month=500,
    spend_per_month_usd=5.0,
    member_images_per_day=5,
    max_n=4,
)


@pytest.fixture
def quotas() -> QuotaSettings:
    return QUOTAS


async def usage(
    h: Harness,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    user: FakeMember | None = None,
    locale: str | None = None,
) -> StoredMessage:
    handle = await h.fake.slash(
        "usage", options, subcommand=subcommand, user=user or h.fake.user, locale=locale
    )
    assert (await handle.response()).ephemeral
    message = await handle.wait_message(lambda m: bool(m.content))
    assert message.ephemeral
    return message


async def failed(h: Harness, member: FakeMember) -> None:
    """A request the image API refuses: in the ledger as failed, charged nothing."""
    h.api.safety_next()
    handle = await h.fake.slash("imagine", {"prompt": "forbidden", "count": 2}, user=member)
    await handle.wait_message(lambda m: "safety" in m.content)
    await h.idle()


def csv_files(message: StoredMessage) -> list[tuple[str, bytes]]:
    """The message's CSV attachments (the chart is attached beside it)."""
    return [(name, data) for name, data in message.files.items() if name.endswith(".csv")]


def resets() -> tuple[str, str]:
    period = periods(datetime.now(UTC), "UTC")
    return discord_time(period.next_day), discord_time(period.next_month)


async def test_usage_is_for_everyone_and_translated(bot: Harness) -> None:
    command = synced(bot.fake, "usage")
    assert command["default_member_permissions"] is None
    assert command.get("contexts") == [0]
    subs = {option["name"]: option for option in command["options"]}
    assert set(subs) == {"me", "server"}
    assert subs["server"]["options"][0]["name"] == "csv"
    assert subs["me"]["name_localizations"]["ko"] == "내사용량"
    translated = {"ko", "ja", "zh-CN", "zh-TW"}
    for item in [command, *subs.values(), *subs["server"]["options"]]:
        assert set(item["name_localizations"]) == translated
        assert set(item["description_localizations"]) == translated


async def test_usage_me_matches_what_was_made(bot: Harness) -> None:
    member = bot.fake.user
    await made(bot, member, 2)
    await made(bot, bot.fake.admin, 1)
    await failed(bot, member)
    day, month = resets()
    text = (await usage(bot, "me")).content
    assert text.splitlines() == [
        f"**You today:** 2 of 5 images used, **3 left**. Resets {day}.",
        f"**This server today:** 47 of 50 images left. Resets {day}.",
        f"**This server this month:** 497 of 500 images and $4.94 of $5.00 left. Resets {month}.",
    ]
    # The same numbers refuse a request: 3 left, 4 asked for.
    handle = await bot.fake.slash("imagine", {"prompt": "x", "count": 4}, user=member)
    refusal = await handle.wait_message(lambda m: bool(m.content))
    assert "(3 left, you asked for 4)" in refusal.content
    await bot.idle()


async def test_usage_me_for_an_exempt_member_in_korean(bot: Harness) -> None:
    staff = bot.fake.add_role(bot.fake.guild, "Staff")
    member = bot.fake.add_member(bot.fake.guild, "erin", roles=[staff])
    await quota(bot, "role", {"role": staff, "exempt": True})
    await made(bot, member, 4)
    await made(bot, member, 4)
    day, _ = resets()
    text = (await usage(bot, "me", user=member)).content
    assert text.splitlines()[0] == "**You today:** 8 images used; you have no daily limit."
    text = (await usage(bot, "me", user=member, locale="ko")).content
    assert text.splitlines()[0] == "**오늘 내 사용량:** 8장 사용. 하루 한도가 없어요."
    assert text.splitlines()[1] == f"**오늘 서버:** 50장 중 42장 남음. {day} 초기화돼요."


async def test_usage_server_is_checked_at_run_time(bot: Harness) -> None:
    message = await usage(bot, "server")
    assert message.content == "You need the Manage Server permission(s) to do that."


async def test_usage_server_totals_top_members_and_models(bot: Harness) -> None:
    fake = bot.fake
    await made(bot, fake.user, 3)
    await made(bot, fake.admin, 1)
    await failed(bot, fake.user)
    _, month = resets()
    text = (await usage(bot, "server", user=fake.admin)).content
    lines = text.splitlines()
    assert re.fullmatch(
        rf"\*\*Usage this month\*\* \(since <t:\d+:D>, time zone UTC; resets {month}\)",
        lines[0],
    )
    assert lines[1:] == [
        "Images: **4** of 500 this month (0 of them in progress); 4 of 50 today.",
        "Spend: **$0.08** of $5.00.",
        "Requests: 3 (2 done, 1 failed, 0 cancelled, 0 interrupted, 0 waiting or running).",
        "**Top members:**",
        f"1. <@{fake.user.user.id}>: 3 images, $0.06",
        f"2. <@{fake.admin.user.id}>: 1 images, $0.02",
        "**By model:**",
        "• dall-e-2: 3 requests, 4 images, $0.08",
    ]
    [chart] = (await usage(bot, "server", user=fake.admin)).attachments
    assert chart.filename.endswith(".png")  # the chart (see test_usage_charts.py)


async def test_usage_server_with_no_images_yet_in_japanese(bot: Harness) -> None:
    text = (await usage(bot, "server", user=bot.fake.admin, locale="ja")).content
    assert text.splitlines()[-1] == "今月はまだ画像が作成されていません。"


async def test_usage_server_csv_has_one_row_per_job(bot: Harness) -> None:
    fake = bot.fake
    await made(bot, fake.user, 2)
    await failed(bot, fake.user)
    await made(bot, fake.admin, 1)
    message = await usage(bot, "server", {"csv": True}, user=fake.admin)
    assert message.content.endswith("This month's ledger is attached (3 rows).")
    [(name, data)] = csv_files(message)
    assert re.fullmatch(rf"usage-{fake.guild.id}-\d{{4}}-\d{{2}}\.csv", name)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert len(rows) == 3
    assert tuple(rows[0]) == CSV_COLUMNS
    first, bad, last = rows
    assert (first["member_id"], first["command"], first["model"]) == (
        str(fake.user.user.id),
        "imagine",
        "dall-e-2",
    )
    assert (first["guild_id"], first["channel_id"]) == (str(fake.guild.id), str(fake.channel.id))
    assert (first["n_requested"], first["n_delivered"], first["cost_usd"]) == ("2", "2", "0.040000")
    assert first["outcome"] == "delivered" and first["error_code"] == ""
    assert first["size"] == "1024x1024"
    queued = datetime.fromisoformat(first["queued_at"])
    assert queued.tzinfo is not None and queued <= datetime.fromisoformat(first["finished_at"])
    assert (bad["outcome"], bad["n_requested"], bad["n_delivered"], bad["cost_usd"]) == (
        "failed",
        "2",
        "0",
        "0.000000",
    )
    assert bad["error_code"] == "provider.safety_rejected"
    assert last["member_id"] == str(fake.admin.user.id)
    assert first["queued_at"] <= bad["queued_at"] <= last["queued_at"]


async def test_a_request_that_timed_out_is_shown_as_possibly_billed_spend(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """The provider may have billed it: the admin sees its estimate as spend, and why."""
    settings = settings_factory(quotas=QUOTAS)
    provider = dataclasses.replace(settings.provider, read_timeout_seconds=0.2)
    async with run_bot(
        fake_discord, fake_images_api, dataclasses.replace(settings, provider=provider)
    ) as h:
        await made(h, h.fake.user)
        h.api.delay = 1.0
        handle = await h.fake.slash("imagine", {"prompt": "slow"})
        unavailable = h.bot.catalog.text("provider.unavailable")
        await handle.wait_message(lambda m: m.content == unavailable)
        await h.idle()
        h.api.delay = 0.0
        text = (await usage(h, "server", user=h.fake.admin)).content
        lines = text.splitlines()
        assert lines[2] == "Spend: **$0.04** of $5.00."  # the image made, and the one perhaps
        assert lines[3] == (
            "Of that, $0.02 is for 1 requests that were cut off and may have been billed "
            "without images."
        )
        message = await usage(h, "server", {"csv": True}, user=h.fake.admin)
        [(_, data)] = csv_files(message)
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert [(r["cost_usd"], r["possibly_billed"]) for r in rows] == [
            ("0.020000", ""),
            ("0.020000", "yes"),
        ]
