"""Quotas through the Discord layer: refusals are private and precise, and nothing is overdrawn.

The ledger test (tests/quotas/test_ledger.py) proves reservations are atomic; here the same is
shown from the member's side, with 200 /imagine interactions arriving at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import open_bot
from bot.config import JobsSettings, Settings
from bot.db.models import Job, JobStatus
from bot.discord.i18n import Catalog
from bot.ops.metrics import Metrics
from bot.quotas.policy import (
    GuildBudget,
    GuildDailyLimit,
    MemberDailyLimit,
    QuotaError,
    TotalBudget,
)
from bot.testing.discord import FakeDiscord, FakeMember, InteractionHandle, StoredMessage
from bot.testing.harness import ROOMY_QUOTAS, Harness, run_bot
from bot.testing.images import png_bytes
from bot.testing.openai_api import FakeImagesAPI

#: The whole bot on SQLite and on PostgreSQL (tests/conftest.py: both_engines).
pytestmark = [pytest.mark.both_engines, pytest.mark.usefixtures("engine")]

CATALOG = Catalog.load()
DONE = CATALOG.text("status.done")
#: dall-e-2 at 256x256 costs $0.016 an image.
PRICE = 16_000


@asynccontextmanager
async def bot_with(
    fake: FakeDiscord,
    api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    *,
    jobs: JobsSettings | None = None,
    **quotas: Any,
) -> AsyncIterator[Harness]:
    settings = settings_factory(
        quotas=dataclasses.replace(ROOMY_QUOTAS, **quotas),
        jobs=jobs or JobsSettings(),
    )
    # The provider's rate limit is not what these tests are about: no spacing out.
    provider = dataclasses.replace(settings.provider, images_per_minute=100_000)
    settings = dataclasses.replace(settings, provider=provider)
    async with run_bot(fake, api, settings) as harness:
        yield harness
    assert fake.spec_violations == [] and api.spec_violations == []


async def imagine(
    harness: Harness, prompt: str, n: int = 1, user: FakeMember | None = None
) -> InteractionHandle:
    handle = await harness.fake.slash(
        "imagine", {"prompt": prompt, "count": n, "size": "256x256"}, user=user
    )
    assert (await handle.response()).ephemeral
    return handle


async def final_status(handle: InteractionHandle) -> StoredMessage:
    """The request's private answer once it is settled: done, or refused by a quota."""
    return await handle.wait_message(_settled)


def _settled(message: StoredMessage) -> bool:
    return message.ephemeral and (message.content == DONE or _is_refusal(message.content))


def _is_refusal(text: str) -> bool:
    return any(_matches(text, cls) for cls in (GuildDailyLimit, GuildBudget, MemberDailyLimit))


def _matches(text: str, cls: type[QuotaError]) -> bool:
    return _pattern(cls).fullmatch(text) is not None


def _pattern(cls: type[QuotaError]) -> re.Pattern[str]:
    """The English text of ``cls`` with every placeholder matching anything."""
    template = CATALOG.template(cls.key) or cls.template
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile("(.+?)".join(re.escape(part) for part in parts), re.DOTALL)


def resets_at(text: str) -> datetime:
    (stamp,) = re.findall(r"<t:(\d+):R>", text)
    return datetime.fromtimestamp(int(stamp), UTC)


async def ledger(harness: Harness) -> tuple[int, int]:
    """Images and micro-dollars charged (reservations of waiting jobs included)."""
    async with harness.bot.storage.sessions() as session:
        row = (
            await session.execute(
                select(
                    func.coalesce(func.sum(Job.n_charged), 0),
                    func.coalesce(func.sum(Job.cost_micro_usd), 0),
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def statuses(harness: Harness) -> list[JobStatus]:
    async with harness.bot.storage.sessions() as session:
        return list((await session.execute(select(Job.status).order_by(Job.id))).scalars())


async def test_a_request_over_the_guilds_daily_images_is_refused_privately(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with bot_with(fake, api, settings_factory, images_per_day=3) as harness:
        first = await imagine(harness, "two", n=2)
        assert (await final_status(first)).content == DONE
        refused = await imagine(harness, "two more", n=2)
        # refused by the admission, which on one process's own queue (SQLite) comes before
        # any "thinking…": answered at once (on the shared queue, after an intake and a defer)
        assert (await refused.response()).type == (4 if harness.bot.runner.shared is None else 5)
        message = await refused.wait_message()
        assert message.ephemeral and message.components == []
        expected = CATALOG.error_text(
            GuildDailyLimit(limit=3, remaining=1, n=2, resets=f"<t:{_stamp(message)}:R>")
        )
        assert message.content == expected
        tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert resets_at(message.content) == tomorrow + timedelta(days=1)
        assert [m for m in fake.messages() if not m.attachments] == []  # nothing public
        await harness.idle()
        assert await ledger(harness) == (2, 2 * PRICE)  # the refusal charged nothing
        assert [r.body["prompt"] for r in api.requests] == ["two"]
        last = await imagine(harness, "the last one", n=1)
        assert (await final_status(last)).content == DONE
        await harness.idle()
        assert await ledger(harness) == (3, 3 * PRICE)


async def test_200_concurrent_requests_admit_exactly_the_quota(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    quota = 37
    jobs = JobsSettings(
        concurrency=4,
        max_queued_per_member=1000,
        max_queued_per_guild=1000,
        member_requests_per_minute=1000,
    )
    people = [fake.add_member(fake.guild, f"member{i}") for i in range(8)]
    async with bot_with(fake, api, settings_factory, jobs=jobs, images_per_day=quota) as harness:
        handles = await asyncio.gather(
            *(
                fake.slash(
                    "imagine",
                    {"prompt": f"request {i}", "size": "256x256"},
                    user=people[i % len(people)],
                )
                for i in range(200)
            )
        )
        answers = await asyncio.gather(*(h.response(timeout=10) for h in handles))
        # each answered within Discord's 3 seconds: "thinking…", or a refusal at once
        assert all(answer.type in (4, 5) and answer.ephemeral for answer in answers)
        finals = await asyncio.gather(*(h.wait_message(_settled, timeout=60) for h in handles))
        await harness.idle()
        done = [h for h, m in zip(handles, finals, strict=True) if m.content == DONE]
        assert all(handle.response_type == 5 for handle in done)
        refused = [m for m in finals if m.content != DONE]
        assert len(done) == quota and len(refused) == 200 - quota
        assert all(_matches(m.content, GuildDailyLimit) for m in refused)
        assert all(m.ephemeral and m.components == [] for m in refused)
        results = [m for m in fake.messages(sources=("followup", "channel")) if m.attachments]
        assert len(results) == quota and all(not m.ephemeral for m in results)
        assert len(api.requests) == quota
        assert await ledger(harness) == (quota, quota * PRICE)
        assert await statuses(harness) == [JobStatus.DELIVERED] * quota
        # every member was treated alike: each got results or refusals, none lost an answer
        prompts = {r.body["prompt"] for r in api.requests}
        assert prompts == {h.payload["data"]["options"][0]["value"] for h in done}


async def test_a_failed_job_does_not_count_against_the_quota(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with bot_with(fake, api, settings_factory, images_per_day=2) as harness:
        api.fail_next(500)
        failed = await imagine(harness, "unlucky", n=2)
        await failed.wait_message(lambda m: m.ephemeral and "not responding" in m.content)
        await harness.idle()
        assert await statuses(harness) == [JobStatus.FAILED]
        assert await ledger(harness) == (0, 0)
        again = await imagine(harness, "lucky", n=2)  # the whole quota is still there
        assert (await final_status(again)).content == DONE
        await harness.idle()
        assert await ledger(harness) == (2, 2 * PRICE)
        refused = await imagine(harness, "one more", n=1)
        assert _matches((await refused.wait_message()).content, GuildDailyLimit)


async def test_a_request_over_the_monthly_budget_is_refused(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with bot_with(fake, api, settings_factory, spend_per_month_usd=0.05) as harness:
        first = await imagine(harness, "three", n=3)  # $0.048 of $0.05
        assert (await final_status(first)).content == DONE
        refused = await imagine(harness, "one more", n=1)  # $0.016 more would be $0.064
        message = await refused.wait_message()
        assert message.ephemeral
        expected = CATALOG.error_text(
            GuildBudget(
                limit="$0.05",
                remaining="$0.002",
                cost="$0.016",
                resets=f"<t:{_stamp(message)}:R>",
            )
        )
        assert message.content == expected
        month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        next_month = (month + timedelta(days=32)).replace(day=1)
        assert resets_at(message.content) == next_month
        await harness.idle()
        assert await ledger(harness) == (3, 3 * PRICE)
        assert len(api.requests) == 1


async def test_a_members_daily_limit_is_theirs_alone(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    async with bot_with(fake, api, settings_factory, member_images_per_day=1) as harness:
        mine = await imagine(harness, "mine")
        assert (await final_status(mine)).content == DONE
        refused = await imagine(harness, "mine again")
        assert _matches((await refused.wait_message()).content, MemberDailyLimit)
        other = await imagine(harness, "theirs", user=fake.admin)
        assert (await final_status(other)).content == DONE
        await harness.idle()
        assert await ledger(harness) == (2, 2 * PRICE)


def _stamp(message: StoredMessage) -> str:
    (stamp,) = re.findall(r"<t:(\d+):R>", message.content)
    return str(stamp)


# --- the operator's ceilings, a private bot, and abuse that costs the bot nothing ---------------


async def test_the_total_spend_cap_holds_across_servers_and_tells_the_member(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each server has budget left; the operator's $0.048 for the month is spent across two."""
    fake, api = fake_discord, fake_images_api
    other = fake.add_guild("Other Server")
    other_channel = fake.add_channel(other, "general")
    mallory = fake.add_member(other, "mallory")
    quotas = dataclasses.replace(ROOMY_QUOTAS, total_spend_per_month_usd=3 * PRICE / 1e6)
    metrics = Metrics()
    settings = settings_factory(quotas=quotas)
    async with (
        open_bot(settings, guild_ready_timeout=0.05, metrics=metrics) as bot,
        fake.running(bot),
    ):
        harness = Harness(fake, api, bot, settings)
        first = await imagine(harness, "two here", n=2)
        assert (await final_status(first)).content == DONE
        handle = await fake.slash(
            "imagine",
            {"prompt": "two there", "count": 2, "size": "256x256"},
            user=mallory,
            channel=other_channel,
        )
        message = await handle.wait_message()
        assert message.ephemeral and message.content == CATALOG.error_text(
            TotalBudget(resets=f"<t:{_stamp(message)}:R>")
        )
        month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        assert resets_at(message.content) == (month + timedelta(days=32)).replace(day=1)
        handle = await fake.slash(
            "imagine",
            {"prompt": "one there", "count": 1, "size": "256x256"},
            user=mallory,
            channel=other_channel,
        )
        assert (await final_status(handle)).content == DONE  # exactly what fits
        await harness.idle()
        assert await ledger(harness) == (3, 3 * PRICE)
        assert [r.body["prompt"] for r in api.requests] == ["two here", "one there"]
        exposed = metrics.render().decode()
        assert 'imagebot_spend_cap_refusals_total{period="month"} 1.0' in exposed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("total spend cap per month" in w for w in warnings)


async def test_a_private_bot_answers_other_servers_and_spends_nothing_there(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    home = fake.add_guild("Home")
    home_channel = fake.add_channel(home, "general")
    owner = fake.add_member(home, "owner")
    refusal = "This bot is private: it doesn't make images in this server."
    async with bot_with(fake, api, settings_factory, allowed_guilds=(home.id,)) as harness:
        handle = await fake.slash("imagine", {"prompt": "a fox", "size": "256x256"})
        response = await handle.response()
        assert response.type == 4 and response.ephemeral  # answered at once, never deferred
        assert (await handle.wait_message()).content == refusal
        picture = fake.add_attachment(png_bytes(256, 256), "fox.png")
        downloads = len(fake.cdn_requests)
        handle = await fake.slash("vary", {"image": picture})
        assert (await handle.wait_message()).content == refusal
        assert len(fake.cdn_requests) == downloads  # the upload was not even downloaded
        handle = await fake.slash(
            "imagine", {"prompt": "a fox", "size": "256x256"}, user=owner, channel=home_channel
        )
        assert (await final_status(handle)).content == DONE
        await harness.idle()
        assert [r.body["prompt"] for r in api.requests] == ["a fox"]
        assert await ledger(harness) == (1, PRICE)


async def test_the_11th_request_in_a_minute_is_refused_with_the_rate_message(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    jobs = JobsSettings(max_queued_per_member=100, max_queued_per_guild=100)
    async with bot_with(fake, api, settings_factory, jobs=jobs) as harness:
        handles = [await imagine(harness, f"request {i}") for i in range(10)]
        assert [(await h.response()).type for h in handles] == [5] * 10
        eleventh = await imagine(harness, "one too many")
        assert (await eleventh.response()).type == 4  # refused at once
        text = (await eleventh.wait_message()).content
        assert re.fullmatch(r"You can start 10 requests a minute\. Try again in [1-6] s\.", text)
        other = await imagine(harness, "someone else's", user=fake.admin)  # per member
        assert (await final_status(other)).content == DONE
        await harness.idle()
        assert len(api.requests) == 11
        assert "one too many" not in {r.body["prompt"] for r in api.requests}


async def test_a_command_over_the_queue_cap_downloads_nothing(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    jobs = JobsSettings(concurrency=1, max_queued_per_member=1)
    async with bot_with(fake, api, settings_factory, jobs=jobs) as harness:
        api.delay = 5.0  # the first job runs all along
        await imagine(harness, "running")
        async with asyncio.timeout(5):
            while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                await asyncio.sleep(0.01)
        await imagine(harness, "waiting")
        picture = fake.add_attachment(png_bytes(256, 256), "fox.png")
        downloads = len(fake.cdn_requests)
        handle = await fake.slash("vary", {"image": picture})
        message = await handle.wait_message()
        assert message.ephemeral and message.content.startswith("You already have 1 requests")
        assert len(fake.cdn_requests) == downloads
        api.delay = 0.0
