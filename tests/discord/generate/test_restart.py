"""Buttons and reactions on results posted before a restart keep working: state is in the DB."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import DatabaseSettings, Settings, StorageSettings
from bot.db.models import JobStatus
from bot.discord.i18n import Catalog
from bot.jobs import store
from bot.testing.discord import FakeDiscord, StoredMessage
from bot.testing.discord.models import walk_components
from bot.testing.harness import job_id_of, new_result, run_bot, seen_ids
from bot.testing.openai_api import FakeImagesAPI
from bot.testing.postgres import scratch_database_url

#: The whole bot on SQLite and on PostgreSQL (tests/conftest.py: both_engines).
pytestmark = [pytest.mark.both_engines, pytest.mark.usefixtures("engine")]

PROMPT = "a fox in the snow"
DONE = Catalog.load().text("status.done")
PRICE = 16_000  # dall-e-2 at 256x256, micro-dollars


async def first_result(
    fake: FakeDiscord, api: FakeImagesAPI, settings: Settings, n: int = 2
) -> StoredMessage:
    """Bot #1 posts a result, then stops (the context closes the bot and its database)."""
    async with run_bot(fake, api, settings) as harness:
        await fake.slash("imagine", {"prompt": PROMPT, "count": n, "size": "256x256"})
        result = await new_result(harness, set())
    assert not fake.connected
    return result


async def test_old_buttons_and_reactions_work_after_a_restart(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    fake, api = fake_discord, fake_images_api
    settings = settings_factory()
    old = await first_result(fake, api, settings)
    job = job_id_of(old)

    async with run_bot(fake, api, settings) as harness:  # bot #2, same database
        assert harness.bot is not None
        before = seen_ids(fake)
        click = await fake.click(old, f"ib:vary:{job}:1", user=fake.admin)
        assert (await click.response()).ephemeral
        varied = await new_result(harness, before)
        assert varied.embeds[0]["title"] == "Variation of image 2"
        assert varied.pinged_ids == [fake.admin.id]

        before = seen_ids(fake)
        click = await fake.click(old, f"ib:redo:{job}", user=fake.user)
        assert (await click.response()).ephemeral
        redone = await new_result(harness, before)
        assert redone.embeds[0]["description"] == PROMPT and len(redone.attachments) == 2

        before = seen_ids(fake)
        await fake.react(old, "🔄", user=fake.admin)
        reacted = await new_result(harness, before)
        assert reacted.source == "channel"
        assert reacted.embeds[0]["title"] == "Variation of image 1"
        assert reacted.pinged_ids == [fake.admin.id]

        click = await fake.click(old, f"ib:remix:{job}", user=fake.user)
        assert (await click.response()).type == 9 and click.modal is not None
        (text_input,) = [
            c for c in walk_components(click.modal["components"]) if c.get("type") == 4
        ]
        assert text_input["value"] == PROMPT
        before = seen_ids(fake)
        submitted = await fake.submit_modal(click, {text_input["custom_id"]: "a fox in the rain"})
        assert (await submitted.response()).ephemeral
        remixed = await new_result(harness, before)
        assert remixed.embeds[0]["description"] == "a fox in the rain"

        click = await fake.click(old, f"ib:delete:{job}", user=fake.user)
        assert (await click.wait_message()).content == "Deleted."
        assert old.deleted
    assert fake.spec_violations == []
    assert api.spec_violations == []


async def test_a_restart_between_two_restarts_keeps_the_new_results_working_too(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """A result made by bot #2 from an old button is itself usable by bot #3."""
    fake, api = fake_discord, fake_images_api
    settings = settings_factory()
    old = await first_result(fake, api, settings, n=2)
    async with run_bot(fake, api, settings) as harness:
        before = seen_ids(fake)
        await fake.click(old, f"ib:vary:{job_id_of(old)}:0")
        second = await new_result(harness, before)
    async with run_bot(fake, api, settings) as harness:
        before = seen_ids(fake)
        await fake.react(second, "1️⃣", user=fake.user)
        third = await new_result(harness, before)
        assert third.embeds[0]["title"] == "Variation of image 1"
    assert fake.spec_violations == []


async def test_old_buttons_on_a_lost_database_are_answered(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """A button whose job is unknown (another database) still gets a private answer."""
    fake, api = fake_discord, fake_images_api
    old = await first_result(fake, api, settings_factory(), n=2)
    job = job_id_of(old)
    other_db = DatabaseSettings(url=scratch_database_url(tmp_path / "other"))
    settings = dataclasses.replace(settings_factory(), database=other_db)
    async with run_bot(fake, api, settings) as harness:
        for custom_id in (f"ib:vary:{job}:0", f"ib:redo:{job}", f"ib:remix:{job}"):
            click = await fake.click(old, custom_id, user=fake.user)
            answer = await click.wait_message()
            assert answer.ephemeral and "no longer exists" in answer.content, custom_id
        click = await fake.click(old, f"ib:delete:{job}", user=fake.admin)
        answer = await click.wait_message()
        assert answer.ephemeral and "no longer exists" in answer.content
        await fake.react(old, "🔄", user=fake.user)  # not a result this bot knows: ignored
        await harness.idle()
    assert len(api.requests) == 1
    assert not old.deleted
    assert fake.spec_violations == []


async def test_a_remix_modal_opened_before_a_restart_is_submitted_after_it(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
) -> None:
    """The member is still typing when the bot restarts: the submission is still answered."""
    fake, api = fake_discord, fake_images_api
    settings = settings_factory()
    async with run_bot(fake, api, settings) as harness:
        await fake.slash("imagine", {"prompt": PROMPT, "count": 1, "size": "256x256"})
        old = await new_result(harness, set())
        click = await fake.click(old, f"ib:remix:{job_id_of(old)}", user=fake.admin)
        assert (await click.response()).type == 9 and click.modal is not None
    (text_input,) = [c for c in walk_components(click.modal["components"]) if c.get("type") == 4]
    async with run_bot(fake, api, settings) as harness:
        before = seen_ids(fake)
        submitted = await fake.submit_modal(
            click, {text_input["custom_id"]: "a fox on a beach"}, user=fake.admin
        )
        assert (await submitted.response()).ephemeral
        remixed = await new_result(harness, before)
        assert remixed.embeds[0]["description"] == "a fox on a beach"
        assert remixed.pinged_ids == [fake.admin.id]
    assert fake.spec_violations == []


async def test_images_made_while_the_database_is_locked_are_posted_and_recorded_once(
    fake_discord: FakeDiscord,
    fake_images_api: FakeImagesAPI,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock past the busy timeout when the images arrive.

    The member gets the images all the same (from the spool); the bot stops while the database
    is still locked; after the restart the job is recorded once, delivered, at its real cost,
    with no Retry and nothing made twice.
    """
    fake, api = fake_discord, fake_images_api
    path = tmp_path / "bot.db"
    spool = tmp_path / "spool"
    settings = settings_factory(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", busy_timeout_seconds=0.2),
        storage=StorageSettings(spool_dir=str(spool)),
    )
    api.delay = 0.5
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        async with run_bot(fake, api, settings) as harness:
            harness.bot.runner.results.retry_delays = (0.05, 0.1)
            handle = await fake.slash("imagine", {"prompt": PROMPT, "size": "256x256"})
            async with asyncio.timeout(5):
                while not api.requests:  # noqa: ASYNC110 - the fake API has no event to wait on
                    await asyncio.sleep(0.01)
            locker.execute("BEGIN EXCLUSIVE")  # until after the bot stopped
            result = await harness.result()
            done = await handle.wait_message(lambda m: m.content == DONE)
            assert done.ephemeral
            await harness.idle()
            assert sorted(p.name for p in spool.iterdir()) == [
                "job-1-0.png",
                "job-1.json",
                "job-1.posted.json",
            ]
    finally:
        locker.rollback()
        locker.close()
    assert result.files["image_1.png"].startswith(b"\x89PNG")

    async with run_bot(fake, api, settings) as harness:  # the database is back
        await harness.idle()
        job = await store.get_job(harness.bot.storage.sessions, 1)
    assert job is not None and job.status is JobStatus.DELIVERED
    assert (job.n_charged, job.n_delivered, job.cost_micro_usd) == (1, 1, PRICE)
    assert not job.possibly_billed
    assert job.result_message_id == result.id
    assert list(spool.iterdir()) == []
    assert len(api.requests) == 1
    posted = [m for m in fake.state.messages.values() if m.attachments and not m.ephemeral]
    assert posted == [result]
    assert not any("ib:retry" in c for m in fake.state.messages.values() for c in m.custom_ids)
    assert fake.spec_violations == [] and api.spec_violations == []
